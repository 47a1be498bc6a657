"""Operators grant credits in the Django admin (/admin/billing/creditgrant/add/). A grant goes
through credit_grant_create, like every other grant, and is never edited afterwards: a mistake is
put right with an adjustment, so what an invoice applied stays explainable."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils import timezone

from .models import CreditGrant, Invoice
from .services.credits import credit_grant_create


class CreditGrantForm(forms.ModelForm):
    class Meta:
        model = CreditGrant
        fields = ["account", "kind", "amount", "description", "expires_at"]

    def clean_expires_at(self):
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise ValidationError("The expiry must be in the future.")
        return expires_at


@admin.register(CreditGrant)
class CreditGrantAdmin(admin.ModelAdmin):
    form = CreditGrantForm
    list_display = ["account", "kind", "amount", "currency", "description", "expires_at", "created_by", "created_at"]
    list_filter = ["kind"]
    search_fields = ["account__organization__name", "account__organization__slug", "description"]
    raw_id_fields = ["account"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        data = form.cleaned_data
        grant = credit_grant_create(
            account=data["account"],
            kind=data["kind"],
            amount=data["amount"],
            description=data["description"],
            expires_at=data.get("expires_at"),
            created_by=request.user,
        )
        obj.pk, obj.currency, obj.created_at, obj.created_by = grant.pk, grant.currency, grant.created_at, request.user


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ["number", "account", "kind", "status", "total", "currency", "period_start", "created_at"]
    list_filter = ["status", "kind"]
    search_fields = ["number", "stripe_invoice_id", "account__organization__slug"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
