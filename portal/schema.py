"""The OpenAPI schema's grouping: the customer API first, the node agents' API apart and last.

drf-spectacular tags each operation with the first path segment after /api/v1 ("organizations"
for thirty operations, "agent" among them in alphabetical order). This hook tags operations by
what a customer does instead, lists the tags in that order with a line each (Swagger UI and Redoc
show groups in the order of the schema's `tags`), and moves the agent's paths after the rest, so
the docs open on the customer API and the agent API reads as what it is: not for customers.
"""

from __future__ import annotations

import re

AGENT_TAG = "Agent (node agents only)"

# (tag, description, path pattern under /api/v1), in the order the docs show them.
TAGS: list[tuple[str, str, str]] = [
    ("Account", "Who the API key or session belongs to; accepting an invitation.", r"/(me|invitations/accept)/"),
    ("Catalog", "What can be launched: offerings, flavors, GPU models, images, regions and prices.", r"/catalog/"),
    ("Instances", "Launch, list, start, stop and terminate instances of an organization.",
     r"/organizations/[^/]+/instances/"),
    ("Reservations", "Reserve whole GPUs or whole nodes of a region for a future window: book (answered at once), "
     "list, cancel.", r"/organizations/[^/]+/reservations/"),
    ("Organizations", "Organizations the caller belongs to.", r"/organizations/([^/]+/)?$"),
    ("Members", "Members of an organization and their roles.", r"/organizations/[^/]+/members/"),
    ("Invitations", "Invitations to join an organization.", r"/organizations/[^/]+/invitations/"),
    ("Projects", "Projects (teams) inside an organization.", r"/organizations/[^/]+/projects/"),
    ("API keys", "API keys of an organization: create, list, revoke.", r"/organizations/[^/]+/api-keys/"),
    ("SSH keys", "Your own SSH public keys, for SSH access to what you launch: add, list, delete. They belong "
     "to a person, so they take a signed-in session; an organization API key gets 403.", r"/ssh-keys/"),
    ("Billing", "Cards, standing, budgets and invoices of an organization.",
     r"/organizations/[^/]+/(billing|budgets|invoices)/"),
    ("Chargeback", "Who used what, how well and what it cost: usage and cost grouped by project, user, instance, "
     "flavor, region or label, per day, idle GPU holders; JSON pages or CSV.", r"/organizations/[^/]+/chargeback/"),
    (AGENT_TAG, "Called by the node agent on each GPU host with its node token: registration, heartbeats, "
     "telemetry and workload status. Not for customers.", r"/agent/"),
]
_RULES = [(name, re.compile(r"^/api/v1" + pattern)) for name, _, pattern in TAGS]
_ORDER = {name: index for index, (name, _, _) in enumerate(TAGS)}
_DESCRIBED = {name: description for name, description, _ in TAGS}


def _tag_of(path: str) -> str | None:
    for name, pattern in _RULES:
        if pattern.match(path):
            return name
    return None


def _rank(tag: str) -> tuple[int, int, str]:
    """Known customer tags in TAGS' order, then tags no rule names (a new part of the API), then the agent's."""
    if tag == AGENT_TAG:
        return (2, 0, "")
    return (0, _ORDER[tag], "") if tag in _ORDER else (1, 0, tag)


def tags_customer_first(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
    used: set[str] = set()
    first_tag: dict[str, str] = {}
    for path, operations in result.get("paths", {}).items():
        tag = _tag_of(path)
        for operation in operations.values():
            if not isinstance(operation, dict):  # a path-level "parameters" list, say
                continue
            if tag:
                operation["tags"] = [tag]
            used.update(operation.get("tags", []))
            first_tag.setdefault(path, (operation.get("tags") or [""])[0])
    result["tags"] = [
        {"name": name, "description": _DESCRIBED[name]} if name in _DESCRIBED else {"name": name}
        for name in sorted(used, key=_rank)
    ]
    # sorted() is stable: paths keep their order inside a tag.
    result["paths"] = dict(sorted(result.get("paths", {}).items(), key=lambda item: _rank(first_tag.get(item[0], ""))))
    return result
