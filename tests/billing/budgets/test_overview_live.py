"""The billing overview through the real ASGI server, Redis channel layer and websockets: a
budget change and an instance's state change are pushed as the re-rendered partial; only those who
may see billing can listen."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus

from apps.accounts.selectors import organization_access_get
from apps.billing.services.budgets import budget_set
from apps.instances.models import InstanceState
from apps.instances.services.actions import instance_stop_request
from tests.billing.budgets.spend import instance_running
from tests.capacity.test_operator_live import open_socket, receive_until, session_cookie
from tests.factories.accounts import MembershipFactory, OrganizationFactory, UserFactory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_budget_and_instance_changes_are_pushed(live_portal, transactional_db):
    owner = UserFactory()
    org = OrganizationFactory(owner=owner)
    instance = instance_running(organization=org, hourly="2.00", since_s=30)
    with open_socket(live_portal, f"/ws/orgs/{org.slug}/billing/", session_cookie(owner)) as ws:
        # when an owner sets a budget elsewhere, the open overview shows it
        budget_set(access=organization_access_get(user=owner, slug=org.slug), monthly_amount="321", hard_cap=True)
        html = receive_until(ws, "$321.00")
        assert html.lstrip().startswith('<section id="billing-overview"') and instance.name in html

        # when the instance stops, it leaves the running list
        instance_stop_request(instance=instance, message="Stopping: test", source="billing")
        html = receive_until(ws, 'data-testid="running-rate">$0.00/h')
    assert instance.name not in html.split("<h2>Running instances</h2>")[1].split("<h2>")[0]
    instance.refresh_from_db()
    assert instance.state == InstanceState.STOPPING  # leaving RUNNING closed its metered run


def test_members_without_billing_and_strangers_cannot_listen(live_portal, transactional_db):
    org = OrganizationFactory(owner=UserFactory())
    member = MembershipFactory(organization=org, role="member").user
    for cookie in (session_cookie(member), session_cookie(UserFactory()), None):
        with pytest.raises(InvalidStatus) as refused:
            open_socket(live_portal, f"/ws/orgs/{org.slug}/billing/", cookie)
        assert refused.value.response.status_code == 403
