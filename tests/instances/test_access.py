"""Who can reach a notebook through the front proxy, and tenancy of the instances API."""

import pytest
from django.test import Client

from apps.instances.services.reports import workload_report_apply
from tests.factories.accounts import MembershipFactory, OrganizationFactory, UserFactory
from tests.support.processes import PROXY_SECRET

pytestmark = pytest.mark.django_db
SOCKET = "/run/neocloud/0123456789ab/0123456789abcdef/jupyter.sock"


@pytest.fixture
def running_notebook(launch, notebook_setup, settings):
    settings.PROXY_SHARED_SECRET = PROXY_SECRET
    instance = launch()
    workload_report_apply(
        node=notebook_setup["node"],
        instance_id=instance.pk,
        seq=1,
        state="running",
        route_slot="slot-abc",
        socket=SOCKET,
    )
    return instance


def ask(client, uri="/nb/slot-abc/lab", secret=PROXY_SECRET):
    return client.get("/internal/notebook-auth", HTTP_X_ORIGINAL_URI=uri, HTTP_X_PROXY_SECRET=secret)


def test_the_owner_is_routed_to_the_socket(running_notebook, user):
    client = Client()
    client.force_login(user)
    response = ask(client)
    assert response.status_code == 200
    assert response["X-Notebook-Socket"] == SOCKET
    assert not any("token" in header.lower() for header in response.headers)


def test_another_logged_in_user_gets_403_and_no_route(running_notebook, org):
    for stranger in (UserFactory(), MembershipFactory(organization=org, role="member").user):
        client = Client()
        client.force_login(stranger)
        response = ask(client)
        assert response.status_code == 403 and "X-Notebook-Socket" not in response


def test_an_org_admin_may_open_it(running_notebook, org):
    client = Client()
    client.force_login(MembershipFactory(organization=org, role="admin").user)
    assert ask(client).status_code == 200


def test_anonymous_gets_401_which_the_proxy_turns_into_a_login(running_notebook):
    assert ask(Client()).status_code == 401


def test_unknown_routes_and_missing_proxy_secret(running_notebook, user):
    client = Client()
    client.force_login(user)
    missing = ask(client, uri="/nb/nope/lab")
    assert missing.status_code == 403 and missing["X-Notebook-Missing"] == "1"  # nginx answers 404
    assert ask(client, secret="wrong").status_code == 403


def test_instances_of_another_tenant_are_404_in_the_api(running_notebook, api_client):
    stranger = UserFactory()
    OrganizationFactory(owner=stranger, slug="theirs")
    api_client.force_login(stranger)
    org_slug = running_notebook.organization.slug
    assert api_client.get(f"/api/v1/organizations/{org_slug}/instances/").status_code == 404
    assert api_client.get(f"/api/v1/organizations/theirs/instances/{running_notebook.pk}/").status_code == 404
    assert api_client.post(f"/api/v1/organizations/theirs/instances/{running_notebook.pk}/stop/").status_code == 404


def test_api_launch_with_bad_input_is_400(api_client, user, org, notebook_setup):
    api_client.force_login(user)
    url = f"/api/v1/organizations/{org.slug}/instances/"
    assert (
        api_client.post(
            url, {"flavor": "nope/nope", "image": "x", "region": "us-east-1", "name": "a"}, format="json"
        ).status_code
        == 400
    )
    good = {
        "flavor": "notebooks/notebook-1x-h100",
        "image": notebook_setup["image"].slug,
        "region": "us-east-1",
        "name": "Bad Name",
    }
    response = api_client.post(url, good, format="json")
    assert response.status_code == 400 and "lower-case" in str(response.json())


def test_instance_list_query_count_does_not_grow(api_client, user, org, launch, django_assert_max_num_queries):
    api_client.force_login(user)
    launch(name="a")
    url = f"/api/v1/organizations/{org.slug}/instances/"
    with django_assert_max_num_queries(10) as few:
        api_client.get(url)
    for n in range(5):
        launch(name=f"more-{n}", schedule=False)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(api_client.get(url).json()["results"]) == 6
