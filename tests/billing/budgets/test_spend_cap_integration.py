"""THE spend cap through every real piece: a notebook launched through the API runs on a real
agent's JupyterLab; the Celery beat meters it and enforces budgets every second (test settings:
tests/support/processes.py) in a real worker; at the cap the instance is warned, then stopped
through its lifecycle, and a new launch is refused with the reason."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from apps.accounts.selectors import organization_access_get
from apps.billing.models import BudgetAlert
from apps.billing.services.budgets import budget_set
from apps.catalog.models import Flavor, Image, Price, Region
from apps.instances.models import Instance, InstanceState
from tests.factories.accounts import OrganizationFactory, UserFactory
from tests.instances.test_notebook_integration import logged_in_client, notebook_node, wait_until  # noqa: F401
from tests.support.mail import wait_for_link

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
S = InstanceState


def test_a_hard_cap_warns_then_stops_the_notebook_and_refuses_new_launches(live_portal, notebook_node):  # noqa: F811
    base = live_portal.url
    owner = UserFactory()
    org = OrganizationFactory(owner=owner, credits=Decimal("100.00"))
    flavor, region = Flavor.objects.get(slug="notebook-1x-h100"), Region.objects.get(code="us-east-1")
    # Given a price of $1 a second from now on (a new price row, as a price change is made) ...
    Price.objects.create(
        flavor=flavor, region=region, unit="hour", currency="USD", amount=Decimal("3600"), valid_from=timezone.now()
    )
    # ... and a $3.00 hard cap on the organization
    budget = budget_set(access=organization_access_get(user=owner, slug=org.slug), monthly_amount="3", hard_cap=True)
    client = logged_in_client(base, owner.email)
    launch = {
        "flavor": "notebooks/notebook-1x-h100",
        "image": Image.objects.get(slug="jupyterlab-4-host").slug,
        "region": "us-east-1",
    }

    # When the owner launches a notebook and it runs
    launched = client.post(f"/api/v1/organizations/{org.slug}/instances/", json={**launch, "name": "capped"})
    assert launched.status_code == 201, launched.text
    url = f"/api/v1/organizations/{org.slug}/instances/{launched.json()['id']}/"
    detail = wait_until(lambda: (r := client.get(url).json())["state"] in ("running", "failed") and r, timeout=90)
    assert detail["state"] == "running", detail

    # Then within seconds the cap is reached: the instance carries the warning, visible on its page
    def events() -> list[str]:
        return [e["message"] for e in client.get(url).json()["events"]]

    warning = wait_until(lambda: next((m for m in events() if "will be stopped in 2 s" in m), None), timeout=60)
    assert "spending cap of $3.00" in warning
    page = client.get(f"/orgs/{org.slug}/instances/{launched.json()['id']}/")
    assert "spending cap of $3.00" in page.text

    # And after the grace it is stopped through its lifecycle, with the cap as the reason
    wait_until(lambda: Instance.objects.get(pk=launched.json()["id"]).state == S.STOPPED, timeout=60)
    stop = [e for e in client.get(url).json()["events"] if e["to_state"] == S.STOPPING]
    assert len(stop) == 1 and stop[0]["message"].startswith("Stopping: the monthly spending cap of $3.00")
    assert set(BudgetAlert.objects.filter(budget=budget).values_list("threshold", flat=True)) >= {
        "cap_warning",
        "cap_stop",
    }

    # And a new launch is refused with the reason
    refused = client.post(f"/api/v1/organizations/{org.slug}/instances/", json={**launch, "name": "another"})
    assert refused.status_code == 400
    assert "spending cap of $3.00" in " ".join(refused.json()["detail"])

    # And the worker mailed the owner, with the way to the budgets page
    link = wait_for_link(to=owner.email, pattern=rf"https?://\S+/orgs/{org.slug}/billing/budgets/")
    assert link.startswith(base)
