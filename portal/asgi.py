"""ASGI entry point: HTTP goes to Django, websockets to the Channels consumers of each app."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
django_http = get_asgi_application()  # must run before anything imports models

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from apps.capacity.api.fast import AgentReportsFastPath  # noqa: E402
from portal.routing import websocket_urlpatterns  # noqa: E402

# Agents' steady-state heartbeats and telemetry skip Django's stack and are written in batches by
# a task this process runs (apps/capacity/api/fast.py).
agent_reports = AgentReportsFastPath(django_http)

application = ProtocolTypeRouter(
    {
        "http": agent_reports,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        # The server's start and stop (uvicorn --lifespan on): on stop, the reports still in the
        # buffer are written before the process exits.
        "lifespan": agent_reports.lifespan,
    }
)
