"""REST API v1 (Django REST framework) and its OpenAPI schema."""

from .env import env_str

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "portal.api.PortalAutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "portal.pagination.PortalPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "portal.api.exception_handler",
    "DEFAULT_VERSIONING_CLASS": None,
    "DEFAULT_THROTTLE_RATES": {
        # Registration is the only agent call without a credential: bound token guessing.
        "agent-register": env_str("PORTAL_AGENT_REGISTER_RATE", "120/min"),
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Neocloud portal API",
    "DESCRIPTION": (
        "Self-service GPU cloud: catalog, instances, organizations, API keys, billing. Authenticate with "
        "`Authorization: Bearer <api key>`. The last group, Agent, is the node agents' own API (node token), "
        "not for customers."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # The customer API first, grouped by task; the node agents' API last, under its own tag.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "portal.schema.tags_customer_first"],
    # One schema name per choice set: fields named alike ("kind", "role", "state") with different
    # choices would otherwise get hashed names (Kind5fbEnum), and a set used under two field
    # names two names; both are warnings of `check --deploy`.
    "ENUM_NAME_OVERRIDES": {
        "InvoiceKindEnum": "apps.billing.models.invoices.InvoiceKind",
        "RoleEnum": "apps.accounts.models.Role",
        "InstanceStateEnum": "apps.instances.models.InstanceState",
    },
}
