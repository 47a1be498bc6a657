"""{% onboarding_checklist %}: the first-run checklist on the page a user lands on after login."""

from django import template

from ..selectors.onboarding import onboarding_checklist_get

register = template.Library()


@register.inclusion_tag("billing/onboarding/checklist.html", takes_context=True)
def onboarding_checklist(context, organization):
    request = context["request"]
    if not request.user.is_authenticated or organization is None:
        return {"checklist": None}
    return {
        "checklist": onboarding_checklist_get(user=request.user, organization=organization),
        "organization": organization,
        "next": request.get_full_path(),
        "csrf_token": context.get("csrf_token"),
    }
