from decimal import Decimal

import pytest
from django.db.models.signals import post_save

from apps.accounts.models import Organization
from apps.accounts.selectors import organization_access_get
from apps.catalog.models import Flavor, Image, Region
from tests.factories.capacity import node_with_gpus


@pytest.fixture(autouse=True)
def _organizations_can_pay():
    """Every organization these tests create (through a factory or a live page) has promotional
    credit, as any customer who launches has a way to pay. Launches without one, and their
    refusals, are tested in tests/billing/eligibility."""
    from apps.billing.services.accounts import billing_account_get_or_create
    from apps.billing.services.credits import credit_grant_create

    def give_credit(sender, instance, created, raw=False, **kwargs):
        if created and not raw:
            account = billing_account_get_or_create(organization=instance)
            credit_grant_create(account=account, kind="promotion", amount=Decimal("1000.00"), description="Test credit")

    post_save.connect(give_credit, sender=Organization, dispatch_uid="tests-instances-credit")
    yield
    post_save.disconnect(sender=Organization, dispatch_uid="tests-instances-credit")


@pytest.fixture
def notebook_setup(demo_catalog, org, user):
    """A ready simulated 8×H100 node in us-east-1, the demo notebook flavor and image, and the
    owner's access to `org`."""
    region = Region.objects.get(code="us-east-1")
    flavor = Flavor.objects.get(offering__kind="notebook", gpu_model__slug="h100-80gb-sxm", slice_kind="whole")
    node = node_with_gpus(region, flavor.gpu_model, n=8)
    image = Image.objects.filter(offering_kinds__contains=["notebook"]).first()
    access = organization_access_get(user=user, slug=org.slug)
    return {"region": region, "flavor": flavor, "node": node, "image": image, "access": access}


@pytest.fixture
def launch(notebook_setup, django_capture_on_commit_callbacks):
    """Launch a notebook; the provision task runs in-process (its Celery path has its own tests)."""
    from apps.instances.services.actions import instance_launch
    from apps.instances.services.placement import instance_schedule

    def _launch(name="nb-1", schedule=True, **overrides):
        s = notebook_setup
        args = {"access": s["access"], "flavor": s["flavor"], "image": s["image"], "region": s["region"], "name": name}
        args.update(overrides)
        with django_capture_on_commit_callbacks(execute=False):
            instance = instance_launch(**args)
        if schedule:
            instance = instance_schedule(instance_id=instance.pk)
        return instance

    return _launch
