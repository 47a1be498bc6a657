from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.selectors import organization_access_get
from apps.billing.models import BillingAccount, InstancePrice, PaymentTerms
from apps.billing.services.accounts import billing_account_get_or_create
from apps.catalog.models import Flavor, Image, Region
from tests.factories.capacity import node_with_gpus


@pytest.fixture
def notebook_setup(demo_catalog, org, user):
    """A ready simulated 8×H100 node, the demo notebook flavor and image, the owner's access, and
    invoice terms for `org` so that billing lets it launch without a card."""
    account = billing_account_get_or_create(organization=org)
    BillingAccount.objects.filter(pk=account.pk).update(terms=PaymentTerms.INVOICE)
    region = Region.objects.get(code="us-east-1")
    flavor = Flavor.objects.get(offering__kind="notebook", gpu_model__slug="h100-80gb-sxm", slice_kind="whole")
    node = node_with_gpus(region, flavor.gpu_model, n=8)
    image = Image.objects.filter(offering_kinds__contains=["notebook"]).first()
    access = organization_access_get(user=user, slug=org.slug)
    return {"region": region, "flavor": flavor, "node": node, "image": image, "access": access}


@pytest.fixture
def launch(notebook_setup, django_capture_on_commit_callbacks):
    """Launch and place a notebook in-process (the Celery path has its own tests in tests/instances).
    The launch is dated an hour back, so tests can report agent confirmations from the past hour."""
    from apps.instances.services.actions import instance_launch
    from apps.instances.services.placement import instance_schedule

    def _launch(name="nb-1"):
        s = notebook_setup
        with django_capture_on_commit_callbacks(execute=False):
            instance = instance_launch(
                access=s["access"], flavor=s["flavor"], image=s["image"], region=s["region"], name=name
            )
        InstancePrice.objects.filter(instance=instance).update(captured_at=timezone.now() - timedelta(hours=1))
        return instance_schedule(instance_id=instance.pk)

    return _launch


@pytest.fixture
def report(notebook_setup):
    """What the node's agent reports about a workload, with a rising sequence number."""
    from apps.instances.services.reports import workload_report_apply

    seq = {"n": 0}

    def _report(instance, state, **fields):
        seq["n"] += 1
        return workload_report_apply(
            node=notebook_setup["node"], instance_id=instance.pk, seq=seq["n"], state=state, **fields
        )

    return _report
