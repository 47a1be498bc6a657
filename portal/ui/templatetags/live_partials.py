"""`{% live_partial "app/partials/x.html" %}`: include a live page's partial the way its socket
renders it (portal/live.py), with its version on its root element, so the page's script can tell
the socket what the page shows. Part of the UI toolkit, below every app."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from portal.live import CSRF_PLACEHOLDER, live_versioned

register = template.Library()


@register.simple_tag(takes_context=True)
def live_partial(context, template_name: str) -> SafeString:
    token = str(context.get("csrf_token") or "")
    partial = context.template.engine.get_template(template_name)
    with context.push(csrf_token=CSRF_PLACEHOLDER):
        html = partial.render(context)
    request = context.get("request")
    if request is not None and request.method not in ("GET", "HEAD"):
        # A form shown again with its errors and what was typed: not what a socket would render,
        # so the page announces no version and its socket pushes nothing on connect (live.js).
        return mark_safe(html.replace(CSRF_PLACEHOLDER, token))
    return mark_safe(live_versioned(html, csrf_token=token)[0])
