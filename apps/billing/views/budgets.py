"""The budgets page: each budget with its month so far, and the forms that set or remove them."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.roles import OrgAccess
from apps.accounts.selectors import projects_list
from apps.accounts.views.common import add_service_errors
from portal.ui.money import money_format

from ..selectors.budgets import budget_get, budget_status_list
from ..services.accounts import billing_account_get_or_create
from ..services.budgets import budget_delete, budget_set
from .overview import billing_access_get

WHOLE_ORGANIZATION = ""


class BudgetForm(forms.Form):
    scope = forms.ChoiceField(label="For", required=False)
    # A string: the service parses it, so "1,000.50" and "abc" get the same clear messages as the API.
    monthly_amount = forms.CharField(label="Monthly amount", max_length=32)
    hard_cap = forms.BooleanField(label="Hard cap: at 100 % refuse launches and stop running instances", required=False)

    def __init__(self, *args, projects, **kwargs):
        super().__init__(*args, **kwargs)
        self.projects = {str(p.pk): p for p in projects}
        self.fields["scope"].choices = [(WHOLE_ORGANIZATION, "The whole organization")] + [
            (key, f"Project {p.name}") for key, p in self.projects.items()
        ]

    def clean_scope(self):
        return self.projects.get(self.cleaned_data["scope"])  # None: the whole organization


def budgets_context(access: OrgAccess, form: BudgetForm | None = None) -> dict:
    account = billing_account_get_or_create(organization=access.organization)
    projects = list(projects_list(organization=access.organization))
    return {
        "access": access,
        "organization": access.organization,
        "account": account,
        "currency": account.currency,
        "budgets": budget_status_list(organization=access.organization),
        "form": form or BudgetForm(projects=projects, initial={"hard_cap": True}),
    }


@login_required
def budgets_page(request, slug: str):
    access = billing_access_get(user=request.user, slug=slug)
    status = 200
    form = None
    if request.method == "POST":
        form = BudgetForm(request.POST, projects=projects_list(organization=access.organization))
        if form.is_valid():
            try:
                budget = budget_set(
                    access=access,
                    project=form.cleaned_data["scope"],
                    monthly_amount=form.cleaned_data["monthly_amount"],
                    hard_cap=form.cleaned_data["hard_cap"],
                )
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                amount = money_format(budget.monthly_amount, budget.currency)
                messages.success(request, f"Budget saved: {amount} a month{' (hard cap)' if budget.hard_cap else ''}.")
                return redirect("billing-budgets", slug=slug)
        status = 400
    return render(request, "billing/budgets/budgets.html", budgets_context(access, form), status=status)


@login_required
@require_POST
def budget_delete_view(request, slug: str, budget_id: int):
    access = billing_access_get(user=request.user, slug=slug)
    budget = budget_get(organization=access.organization, budget_id=budget_id)
    try:
        budget_delete(access=access, budget=budget)
    except PermissionDenied as denied:
        messages.error(request, str(denied))
    else:
        messages.success(request, "Budget removed.")
    return redirect("billing-budgets", slug=slug)
