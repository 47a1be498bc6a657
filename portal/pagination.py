"""API pagination: limit/offset pages whose numbers are checked and capped.

Its own module, apart from portal/api.py: REST_FRAMEWORK's DEFAULT_PAGINATION_CLASS is imported
while rest_framework.generics is still being imported, so it must not import that in turn.
"""

from __future__ import annotations

from rest_framework import exceptions, status
from rest_framework.pagination import LimitOffsetPagination

MAX_PAGE_LIMIT = 200


class InputRefused(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The request's input is not valid."
    default_code = "invalid_input"




def _whole_number(raw: str, name: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:  # also a number of more than 4300 digits, which int() refuses
        value = None
    if value is None or value < minimum:
        raise InputRefused(f"'{name}' must be a whole number of at least {minimum}; got {raw[:40]!r}.")
    return value


class PortalPagination(LimitOffsetPagination):
    """Limit/offset pages whose numbers are checked (400 with a reason) and capped."""

    max_limit = MAX_PAGE_LIMIT

    def get_limit(self, request) -> int:
        raw = request.query_params.get(self.limit_query_param)
        if raw is None or raw == "":
            return self.default_limit
        return min(_whole_number(raw, self.limit_query_param, 1), self.max_limit)

    def get_offset(self, request) -> int:
        raw = request.query_params.get(self.offset_query_param)
        if raw is None or raw == "":
            return 0
        # Past the end every offset gives the same empty page; the count (known by now) bounds it.
        return min(_whole_number(raw, self.offset_query_param, 0), self.count)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["description"] = f"Results per page, 1 or more; above {self.max_limit} it is capped."
                parameter["schema"]["minimum"] = 1
            elif parameter["name"] == self.offset_query_param:
                parameter["description"] = "Index of the first result, 0 or more; past the end the page is empty."
                parameter["schema"]["minimum"] = 0
        return parameters
