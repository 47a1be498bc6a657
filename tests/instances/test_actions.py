"""Launch, stop, start and delete as a user does them, with bad input and tenancy."""

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import PermissionDenied, ValidationError

from apps.accounts.selectors import organization_access_get
from apps.capacity.models import AllocationState, Gpu
from apps.capacity.services.quotas import quota_set
from apps.instances.live import organization_instances_group
from apps.instances.models import Instance, InstanceState
from apps.instances.services.actions import instance_delete, instance_launch, instance_start, instance_stop
from apps.instances.services.reports import workload_report_apply
from portal.live import REFRESH_EVENT
from tests.factories.accounts import MembershipFactory

pytestmark = pytest.mark.django_db
S = InstanceState


@pytest.mark.parametrize("name", ["", "Has Spaces", "-leading", "x" * 64, "ünïcode"])
def test_bad_names_are_refused_and_nothing_is_created(launch, name):
    with pytest.raises(ValidationError, match="lower-case"):
        launch(name=name, schedule=False)
    assert not Instance.objects.exists()


def test_a_second_active_instance_with_the_same_name_is_refused(launch):
    launch(name="same")
    with pytest.raises(ValidationError, match="already called"):
        launch(name="same")


def test_a_viewer_cannot_launch(launch, org):
    viewer = MembershipFactory(organization=org, role="viewer").user
    with pytest.raises(PermissionDenied):
        launch(access=organization_access_get(user=viewer, slug=org.slug))


def test_quota_is_checked_at_launch_with_the_reason(launch, org):
    from decimal import Decimal

    quota_set(organization=org, max_gpus=Decimal("0.5"))
    with pytest.raises(ValidationError, match="Quota exceeded"):
        launch(schedule=False)


def test_an_offering_without_a_driver_cannot_be_launched(launch, notebook_setup):
    from apps.catalog.models import Flavor, Image

    # Given a Ray flavor with a Ray image (Ray has no driver yet), when it is launched
    ray = Flavor.objects.filter(offering__kind="ray").first()
    ray_image = Image.objects.filter(offering_kinds__contains=["ray"]).first()
    # Then it is refused for that reason, not for its image
    with pytest.raises(ValidationError, match="not yet available"):
        launch(flavor=ray, image=ray_image, schedule=False)


def test_stop_is_idempotent_and_releases_capacity_once_the_agent_confirms(launch, notebook_setup):
    access, node = notebook_setup["access"], notebook_setup["node"]
    instance = launch()
    workload_report_apply(
        node=node,
        instance_id=instance.pk,
        seq=1,
        state="running",
        route_slot="slot-1",
        socket="/run/neocloud/0123456789ab/0123456789abcdef/jupyter.sock",
    )

    instance_stop(access=access, instance=instance)
    instance_stop(access=access, instance=Instance.objects.get(pk=instance.pk))  # twice: harmless
    assert Instance.objects.get(pk=instance.pk).state == S.STOPPING
    assert Gpu.objects.filter(allocated_milli=1000).count() == 1

    workload_report_apply(node=node, instance_id=instance.pk, seq=2, state="stopped")
    workload_report_apply(node=node, instance_id=instance.pk, seq=3, state="stopped")  # duplicate report

    instance.refresh_from_db()
    assert instance.state == S.STOPPED
    assert instance.allocation.state == AllocationState.RELEASED
    assert not Gpu.objects.filter(allocated_milli__gt=0).exists()
    assert instance.runtime.route_slot is None


def test_start_again_and_delete(launch, notebook_setup):
    access, node = notebook_setup["access"], notebook_setup["node"]
    instance = launch()
    instance_stop(access=access, instance=instance)
    workload_report_apply(node=node, instance_id=instance.pk, seq=1, state="stopped")

    restarted = instance_start(access=access, instance=Instance.objects.get(pk=instance.pk))
    assert restarted.state == S.REQUESTED

    with pytest.raises(ValidationError, match="only a stopped|Only a stopped"):
        instance_start(access=access, instance=restarted)
    instance_stop(access=access, instance=restarted)  # not yet placed: stops at once
    deleted = instance_delete(access=access, instance=Instance.objects.get(pk=instance.pk))
    assert deleted.state == S.TERMINATED


def test_a_running_instance_must_be_stopped_before_delete(launch, notebook_setup):
    instance = launch()
    with pytest.raises(ValidationError, match="Stop the instance"):
        instance_delete(access=notebook_setup["access"], instance=instance)


def test_another_member_cannot_stop_my_instance_but_an_admin_can(launch, org, notebook_setup):
    instance = launch()
    member = MembershipFactory(organization=org, role="member").user
    with pytest.raises(PermissionDenied):
        instance_stop(access=organization_access_get(user=member, slug=org.slug), instance=instance)
    admin = MembershipFactory(organization=org, role="admin").user
    assert (
        instance_stop(access=organization_access_get(user=admin, slug=org.slug), instance=instance).state == S.STOPPING
    )


def test_a_launch_is_announced_to_the_organizations_open_instance_lists(notebook_setup, org,
                                                                         django_capture_on_commit_callbacks):

    # Given an instance list page of the organization listening on its group (the real Redis layer)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(organization_instances_group(org.pk), channel)
    try:
        # When a notebook is launched (not yet scheduled by any worker) and the launch commits
        s = notebook_setup
        with django_capture_on_commit_callbacks(execute=True):
            instance_launch(access=s["access"], flavor=s["flavor"], image=s["image"], region=s["region"],
                            name="announced")
        # Then the list is told at once, so another tab shows the new row in `requested`
        async def receive():
            return await asyncio.wait_for(layer.receive(channel), timeout=10)

        assert async_to_sync(receive)()["type"] == REFRESH_EVENT
    finally:
        async_to_sync(layer.group_discard)(organization_instances_group(org.pk), channel)
