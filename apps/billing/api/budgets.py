"""REST API v1 for budgets: list them with this month's spend, set one (organization or project),
remove one. Scoped like the pages: the caller's organization, roles that may see billing; another
tenant's budget is 404. Money is a decimal string, never a float."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response

from apps.accounts.api.access import OrganizationScopedMixin
from apps.accounts.models import Project

from ..selectors.budgets import BudgetStatus, budget_get, budget_status_list
from ..services.budgets import budget_delete, budget_set


class BudgetSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="budget.pk")
    project = serializers.CharField(source="budget.project.slug", default=None, allow_null=True)
    monthly_amount = serializers.DecimalField(source="budget.monthly_amount", max_digits=14, decimal_places=2)
    currency = serializers.CharField(source="budget.currency")
    hard_cap = serializers.BooleanField(source="budget.hard_cap")
    is_default = serializers.BooleanField(source="budget.is_default")
    spend = serializers.DecimalField(source="spend_display", max_digits=14, decimal_places=2)
    percent = serializers.IntegerField()
    capped = serializers.BooleanField(help_text="a reached hard cap: launches in its scope are refused")


class BudgetSetSerializer(serializers.Serializer):
    project = serializers.SlugField(
        required=False, allow_null=True, help_text="a project slug; empty: the whole organization"
    )
    # A string: the service parses it and answers "abc" or "-5" with the same reasons as the page.
    monthly_amount = serializers.CharField(max_length=32)
    currency = serializers.CharField(max_length=3, required=False)
    hard_cap = serializers.BooleanField(default=False)


class BudgetViewSet(OrganizationScopedMixin, viewsets.ViewSet):
    lookup_value_converter = "int"

    def _billing_access(self):
        if not self.access.can_view_billing:
            raise PermissionDenied("Only owners, admins and billing members see budgets.")
        return self.access

    def _statuses(self) -> list[BudgetStatus]:
        return budget_status_list(organization=self._billing_access().organization)

    @extend_schema(responses=BudgetSerializer(many=True))
    def list(self, request, org_slug):
        return Response(BudgetSerializer(self._statuses(), many=True).data)

    @extend_schema(request=BudgetSetSerializer, responses={201: BudgetSerializer})
    def create(self, request, org_slug):
        """Set the budget of the organization or of one project (changing it if there is one)."""
        access = self._billing_access()
        payload = BudgetSetSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        project = None
        if data.get("project"):
            project = Project.objects.filter(organization=access.organization, slug=data["project"]).first()
            if project is None:
                raise Http404("No such project.")
        budget = budget_set(
            access=access,
            project=project,
            monthly_amount=data["monthly_amount"],
            hard_cap=data["hard_cap"],
            currency=data.get("currency"),
        )
        status_ = next(s for s in self._statuses() if s.budget.pk == budget.pk)
        return Response(BudgetSerializer(status_).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)], responses={204: None})
    def destroy(self, request, org_slug, pk):
        access = self._billing_access()
        budget_delete(access=access, budget=budget_get(organization=access.organization, budget_id=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)
