"""The API docs open on the customer API; the node agents' API is apart, under its own tag, last."""

import pytest
from drf_spectacular.generators import SchemaGenerator

from portal.schema import AGENT_TAG

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def _operations(schema):
    return [(path, op) for path, ops in schema["paths"].items() for op in ops.values() if isinstance(op, dict)]


def test_the_tags_list_the_customer_api_first_and_the_agent_last(schema):
    names = [tag["name"] for tag in schema["tags"]]
    assert names[:3] == ["Account", "Catalog", "Instances"]
    assert names[-1] == AGENT_TAG and names.count(AGENT_TAG) == 1
    assert {"Organizations", "Members", "API keys", "Billing"} <= set(names)
    assert all(tag.get("description") for tag in schema["tags"])


def test_every_agent_operation_and_only_those_carry_the_agent_tag(schema):
    for path, operation in _operations(schema):
        assert (operation["tags"] == [AGENT_TAG]) == path.startswith("/api/v1/agent/"), path
        assert len(operation["tags"]) == 1


def test_agent_paths_come_after_every_customer_path(schema):
    paths = list(schema["paths"])
    agent = [i for i, path in enumerate(paths) if path.startswith("/api/v1/agent/")]
    assert agent and agent == list(range(len(paths) - len(agent), len(paths)))


def test_customer_operations_are_grouped_by_task(schema):
    tag_of = {path: op["tags"][0] for path, op in _operations(schema)}
    assert tag_of["/api/v1/organizations/{org_slug}/instances/{id}/stop/"] == "Instances"
    assert tag_of["/api/v1/organizations/{org_slug}/api-keys/"] == "API keys"
    assert tag_of["/api/v1/organizations/{org_slug}/invoices/"] == "Billing"
    assert tag_of["/api/v1/organizations/{slug}/"] == "Organizations"
    assert tag_of["/api/v1/me/"] == "Account"


def test_the_schema_endpoint_serves_the_same_order(client, user):
    client.force_login(user)
    response = client.get("/api/schema/?format=json")
    names = [tag["name"] for tag in response.json()["tags"]]
    assert response.status_code == 200 and names[0] == "Account" and names[-1] == AGENT_TAG
