"""REST API v1 for invoices (read only). Scoped like the pages: the caller's organization, roles
that may see billing; another tenant's invoice is 404. Money is a decimal string, never a float."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.response import Response

from apps.accounts.api.access import OrganizationScopedMixin

from ..filters import InvoiceFilter
from ..models import Invoice, InvoiceLine
from ..selectors.invoices import invoice_get, invoices_list


class InvoiceLineSerializer(serializers.ModelSerializer):
    instance = serializers.UUIDField(source="instance_id", read_only=True, allow_null=True)
    project = serializers.CharField(source="project.slug", read_only=True, default=None, allow_null=True)
    hourly_amount = serializers.DecimalField(max_digits=12, decimal_places=6, coerce_to_string=True)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=True)

    class Meta:
        model = InvoiceLine
        fields = ["kind", "instance", "description", "project", "flavor_name", "seconds", "hourly_amount", "amount"]


class InvoiceSerializer(serializers.ModelSerializer):
    subtotal = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=True)
    credits_applied = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=True)
    total = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=True)

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "kind",
            "status",
            "period_start",
            "period_end",
            "currency",
            "subtotal",
            "credits_applied",
            "total",
            "created_at",
            "finalized_at",
            "paid_at",
        ]


class InvoiceDetailSerializer(InvoiceSerializer):
    lines = serializers.SerializerMethodField()

    class Meta(InvoiceSerializer.Meta):
        fields = [*InvoiceSerializer.Meta.fields, "lines"]

    @extend_schema_field(InvoiceLineSerializer(many=True))
    def get_lines(self, invoice: Invoice) -> list:
        return InvoiceLineSerializer(invoice.lines.select_related("project").order_by("id"), many=True).data


class InvoiceViewSet(OrganizationScopedMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = InvoiceSerializer
    queryset = Invoice.objects.none()  # names the model for the schema; rows come from get_queryset
    lookup_value_converter = "int"
    filterset_class = InvoiceFilter  # the invoice list page's filter bar uses the same FilterSet

    def get_queryset(self):
        return invoices_list(access=self.access)

    @extend_schema(responses=InvoiceDetailSerializer)
    def retrieve(self, request, org_slug, pk):
        return Response(InvoiceDetailSerializer(invoice_get(access=self.access, invoice_id=pk)).data)
