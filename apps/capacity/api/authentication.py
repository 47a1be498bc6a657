from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from ..models import Node
from ..services.reports import node_authenticate


class NodeAuthentication(authentication.BaseAuthentication):
    """`Authorization: Node <node_id>:<credential>`, the credential a node got at registration."""

    keyword = "Node"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, value = header.partition(" ")
        if scheme != self.keyword:
            return None
        node_id, _, credential = value.strip().partition(":")
        try:
            node = node_authenticate(node_id=node_id, credential=credential)
        except (ValueError, ValidationError):  # not a UUID
            node = None
        if node is None:
            raise exceptions.AuthenticationFailed("Unknown node or wrong node credential.")
        return AnonymousUser(), node

    def authenticate_header(self, request) -> str:
        return self.keyword


class IsNodeAgent(permissions.BasePermission):
    message = "Only a registered node agent may call this endpoint."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, Node)


class NodeAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = NodeAuthentication
    name = "nodeCredential"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization", "description": "Node <node_id>:<credential>"}
