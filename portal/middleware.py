"""Request-wide guards for the HTML pages.

Text with control characters (NUL above all: PostgreSQL cannot store it, and a form's model choice
that looks it up raised DataError, a 500) is refused with a 400 that says where, before any view
runs. The API answers the same inputs itself, in JSON and as its schema documents
(`portal.api.PortalApiMixin`), so this middleware leaves `/api/` alone.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .validators import FORBIDDEN_TEXT_REASON, text_problems

_API_PREFIX = "/api/"


class ControlCharacterMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(_API_PREFIX):
            problems = list(_request_text_problems(request))
            if problems:
                reason = f"{FORBIDDEN_TEXT_REASON}: {'; '.join(problems[:5])}."
                return HttpResponse(reason, status=400, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


def _request_text_problems(request: HttpRequest):
    yield from text_problems(request.path, "the address")
    yield from text_problems({key: request.GET.getlist(key) for key in request.GET}, "the query")
    if request.method == "POST" and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        yield from text_problems({key: request.POST.getlist(key) for key in request.POST}, "the form")
