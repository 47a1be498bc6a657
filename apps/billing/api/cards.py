"""REST API v1: an organization's cards and payment standing (read only; cards are added in the
browser, where Stripe Elements keeps the number away from us). Roles that may see billing only;
another tenant answers 404."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api.access import OrganizationScopedMixin

from ..models import PaymentMethod
from ..selectors.cards import card_is_expired, cards_list, payment_method_usable_get
from ..services.accounts import billing_account_get_or_create


class CardSerializer(serializers.ModelSerializer):
    expired = serializers.SerializerMethodField()

    class Meta:
        model = PaymentMethod
        fields = ["id", "brand", "last4", "exp_month", "exp_year", "is_default", "expired", "created_at"]

    def get_expired(self, card: PaymentMethod) -> bool:
        return card_is_expired(card=card)


class StandingSerializer(serializers.Serializer):
    standing = serializers.CharField()
    standing_label = serializers.CharField()
    standing_changed_at = serializers.DateTimeField()
    past_due_since = serializers.DateTimeField(allow_null=True)
    terms = serializers.CharField()
    has_usable_card = serializers.BooleanField()


class _BillingView(OrganizationScopedMixin, APIView):
    def billing_account(self):
        if not self.access.can_view_billing:
            raise PermissionDenied("Only owners, admins and billing members see billing.")
        return billing_account_get_or_create(organization=self.access.organization)


class CardListView(_BillingView):
    @extend_schema(responses=CardSerializer(many=True))
    def get(self, request, org_slug):
        return Response(CardSerializer(cards_list(account=self.billing_account()), many=True).data)


class StandingView(_BillingView):
    @extend_schema(responses=StandingSerializer)
    def get(self, request, org_slug):
        account = self.billing_account()
        return Response(
            StandingSerializer(
                {
                    "standing": account.standing,
                    "standing_label": account.get_standing_display(),
                    "standing_changed_at": account.standing_changed_at,
                    "past_due_since": account.past_due_since,
                    "terms": account.terms,
                    "has_usable_card": payment_method_usable_get(account=account) is not None,
                }
            ).data
        )
