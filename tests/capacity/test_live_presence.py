"""After a batch of reports is stored, only node pages someone has open are told to re-render (one
pipelined presence query to Redis, then a group_send per open page), through the real channel layer."""

import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from apps.capacity import live_presence
from apps.capacity.live import INVENTORY_GROUP, node_group
from apps.capacity.live_presence import groups_with_members, telemetry_announce
from portal.live import REFRESH_EVENT


@pytest.fixture
def fresh_throttle(monkeypatch):
    monkeypatch.setattr(live_presence, "_last_inventory_push", 0.0)


def test_only_open_node_pages_are_told_and_each_once(fresh_throttle):
    watched, unwatched = uuid.uuid4(), uuid.uuid4()

    async def run():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(node_group(watched), channel)
        try:
            present = await groups_with_members(layer, [node_group(watched), node_group(unwatched)])
            told = await telemetry_announce(node_ids=[watched, unwatched])
            message = await layer.receive(channel)
        finally:
            await layer.group_discard(node_group(watched), channel)
        return present, told, message

    present, told, message = async_to_sync(run)()

    assert present == [node_group(watched)]
    assert told == 1  # the watched node's page; not the unwatched node's, nor the unopened inventory page
    assert message == {"type": REFRESH_EVENT}


def test_nobody_watching_tells_no_group(fresh_throttle):
    async def run():
        layer = get_channel_layer()
        groups = [node_group(uuid.uuid4()) for _ in range(5)]
        return await groups_with_members(layer, groups)

    assert async_to_sync(run)() == []


def test_the_inventory_page_is_told_at_most_once_per_throttle_period(fresh_throttle):
    async def run():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(INVENTORY_GROUP, channel)
        try:
            first = await telemetry_announce(node_ids=[uuid.uuid4()])
            second = await telemetry_announce(node_ids=[uuid.uuid4()])
        finally:
            await layer.group_discard(INVENTORY_GROUP, channel)
        return first, second

    assert async_to_sync(run)() == (1, 0)
