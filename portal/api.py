"""API-wide conventions: bad input is a 4xx JSON answer with a `detail` reason, never a 500.

Every DRF view of the portal mixes in `PortalApiMixin` (through `OrganizationScopedMixin`, the
catalog's and the agents' base views), which brings the request-wide guards; the schema class
that documents their answers and the paginator are REST_FRAMEWORK's defaults:

- a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE is refused with 413 before it is read (DRF
  parses JSON straight from the stream, so Django's own limit never applies to it);
- text in the query string, the path and the body may not hold control characters or lone
  surrogates (portal/validators.py says why);
- `limit` and `offset` must be whole numbers; a limit above MAX_PAGE_LIMIT is capped and an offset
  past the end gives the empty last page (PostgreSQL refuses a LIMIT above 2**63 - 1).

Ids in paths are typed by URL converters (`lookup_value_converter` on each viewset, with
`SimpleRouter(use_regex_path=False)`), so `/members/abc/` never reaches a view: it is the JSON 404
of portal.views.not_found.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from portal.pagination import MAX_PAGE_LIMIT, InputRefused, PortalPagination  # noqa: F401 - re-exported
from portal.validators import FORBIDDEN_TEXT_REASON, text_problems


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"

    def __init__(self):
        super().__init__(f"Request body too large: at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")


def exception_handler(exc, context):
    # Service functions raise Django's ValidationError; the API answers it as a 400 with reasons.
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        set_rollback()
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):  # a form body past Django's limit, read by request.POST
        exc = BodyTooLarge()
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.NotAuthenticated):
        response.data = {"detail": "Authentication required: log in or send 'Authorization: Bearer <api key>'."}
    return response


# --- the schema documents every error a view can answer ----------------------------------------


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="Why the request was refused.")


_ERROR_RESPONSES = {
    "400": OpenApiResponse(
        OpenApiTypes.OBJECT,
        description="Bad input: {'detail': reason} or, for a body, {field: [reasons]}.",
    ),
    "401": OpenApiResponse(ErrorSerializer, description="No or an invalid API key or session."),
    "403": OpenApiResponse(ErrorSerializer, description="Your role (or an API key) may not do this."),
    "404": OpenApiResponse(ErrorSerializer, description="No such object in your organization."),
    "413": OpenApiResponse(ErrorSerializer, description="The request body is too large."),
    "415": OpenApiResponse(ErrorSerializer, description="The body's Content-Type is not one this endpoint parses."),
    "429": OpenApiResponse(ErrorSerializer, description="Too many requests (or failed API keys); retry later."),
}


def error_response(description: str) -> OpenApiResponse:
    """For @extend_schema(responses=…): a `{"detail": reason}` answer particular to one view."""
    return OpenApiResponse(ErrorSerializer, description=description)


class PortalAutoSchema(AutoSchema):
    """drf-spectacular's schema plus the error answers a view can give, so clients (and the
    schema fuzzer, tests/portal/test_schema_fuzz.py) know every status and body."""

    def _error_codes(self) -> list[str]:
        codes = ["400"]
        if self.view.get_authenticators():
            codes.append("401")
        if any(not isinstance(permission, AllowAny) for permission in self.view.get_permissions()):
            codes.append("403")
        if "{" in self.path:
            codes.append("404")
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["413", "415"]  # DRF answers a body it has no parser for with 415
        if self.view.get_throttles() or self.view.get_authenticators():  # API key failures are bounded too
            codes.append("429")
        return codes

    def _get_paginator(self):
        # DRF paginates only generic views; a plain APIView's list is answered whole.
        return super()._get_paginator() if isinstance(self.view, GenericAPIView) else None

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in self._error_codes():
            if code not in responses:
                responses[code] = self._get_response_for_code(_ERROR_RESPONSES[code], code, direction=direction)
        return responses


# --- the request-wide guards -------------------------------------------------------------------


class PortalApiMixin:
    """Mixed into every API view (see the module docstring). A view whose body is machine text
    relayed from elsewhere (an agent's report of a process's output) sets `body_text_checked`
    to False; DRF's CharField still refuses NUL there. Its schema class and paginator are the
    REST_FRAMEWORK defaults (portal/settings/api.py), so every view has them, mixin or not."""

    body_text_checked = True

    def initial(self, request, *args, **kwargs):
        if _declared_length(request) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            raise BodyTooLarge()
        super().initial(request, *args, **kwargs)
        problems = list(text_problems(kwargs, "path"))
        for name, values in request.query_params.lists():
            problems.extend(text_problems(name, "a query parameter's name"))
            for value in values:
                problems.extend(text_problems(value, f"query parameter {name!r}"))
        if self.body_text_checked and request.method not in ("GET", "HEAD", "OPTIONS", "DELETE"):
            problems.extend(text_problems(_plain(request.data), "body"))
        if problems:
            raise InputRefused(f"{FORBIDDEN_TEXT_REASON}: {'; '.join(problems[:5])}.")


def _declared_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _plain(data):
    # A form or multipart body is a QueryDict: check every value of every key (files are not text).
    return {key: data.getlist(key) for key in data} if hasattr(data, "getlist") else data
