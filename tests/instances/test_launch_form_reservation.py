"""The launch form's "Run on": the organization's active reservations of the chosen flavor's GPU
model are offered beside on-demand capacity, with their size, region, end and free GPUs; one
chosen fixes the region and the launch runs on its GPUs (the API's path); a reservation that
filled or ended since the page was drawn is a form error with the launch's reason, nothing made."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.capacity.models import ReservationState
from apps.capacity.services.reservations import reservation_create, reservation_end, reservation_start, when
from apps.catalog.models import Flavor
from apps.instances.models import Instance
from tests.factories.accounts import OrganizationFactory

pytestmark = pytest.mark.django_db


def _url(org) -> str:
    return f"/orgs/{org.slug}/instances/new/"


def _select(html: str, name: str) -> str:
    found = re.search(rf'<select name="{name}".*?</select>', html, re.S)
    return found.group(0) if found else ""


def _options(html: str, name: str) -> list[str]:
    return re.findall(r"<option[^>]*>[^<]*</option>", _select(html, name))


def _reserve(organization, setup, *, gpus: int = 2, start: bool = True):
    """A reservation of the notebook flavor's GPUs in us-east-1, from now for two hours; held now
    unless `start` is False."""
    now = timezone.now()
    reservation = reservation_create(
        organization=organization,
        flavor=setup["flavor"],
        region=setup["region"],
        gpus=gpus,
        starts_at=now,
        ends_at=now + timedelta(hours=2),
    )
    if start:
        reservation = reservation_start(reservation_id=reservation.pk)
        assert reservation.state == ReservationState.ACTIVE
    return reservation


def _post(setup, **extra) -> dict:
    return {
        "flavor": setup["flavor"].pk,
        "region": "us-east-1",
        "image": setup["image"].pk,
        "name": "on-reservation",
        **extra,
    }


def test_without_an_active_reservation_there_is_no_run_on_choice(client, user, org, notebook_setup):
    # given a reservation of the organization that has not started, and another tenant's active one
    _reserve(org, notebook_setup, start=False)
    _reserve(OrganizationFactory(), notebook_setup)
    client.force_login(user)
    # when the form is drawn
    html = client.get(_url(org)).content.decode()
    # then it offers on-demand capacity only, with no "Run on" choice
    assert _select(html, "reservation") == ""
    assert 'data-testid="region-availability"' in html


def test_an_active_reservation_is_offered_with_its_size_region_end_and_free_gpus(
    client, user, org, notebook_setup, launch
):
    # given an active reservation of 4 GPUs, one of them lent to an instance
    reservation = _reserve(org, notebook_setup, gpus=4)
    launch(name="nb-1", schedule=False, reservation=reservation.pk)
    client.force_login(user)
    # when the form is drawn for the notebook flavor
    html = client.get(_url(org), {"flavor": notebook_setup["flavor"].pk}).content.decode()
    # then "Run on" offers on-demand capacity first (chosen) and the reservation with what is left
    options = _options(html, "reservation")
    assert len(options) == 2
    assert "On-demand capacity" in options[0] and "selected" in options[0]
    model = notebook_setup["flavor"].gpu_model.name
    assert f"Reservation of 4 × {model} in us-east-1 until {when(reservation.ends_at)} · 3 GPUs free" in options[1]
    assert f'value="{reservation.pk}"' in options[1] and "disabled" not in options[1]
    # and changing it redraws the region choices, as a flavor change does
    assert 'hx-target="#launch-region-choices"' in _select(html, "reservation")


def test_a_flavor_of_another_gpu_model_offers_no_reservation(client, user, org, notebook_setup):
    # given an active H100 reservation
    _reserve(org, notebook_setup)
    client.force_login(user)
    # when the flavor changes to an L40S one (the htmx redraw)
    l40s = Flavor.objects.get(slug="notebook-1x-l40s")
    html = client.get(_url(org), {"flavor": l40s.pk}, HTTP_HX_REQUEST="true").content.decode()
    # then there is nothing to run on but on-demand capacity
    assert _select(html, "reservation") == ""


def test_choosing_a_reservation_fixes_the_region(client, user, org, notebook_setup):
    # given an active reservation in us-east-1
    reservation = _reserve(org, notebook_setup)
    client.force_login(user)
    # when "Run on" changes to it (the htmx redraw), with another region chosen before
    html = client.get(
        _url(org),
        {"flavor": notebook_setup["flavor"].pk, "region": "eu-north-1", "reservation": str(reservation.pk)},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    # then the reservation is chosen and its region is the only one, chosen
    chosen = [o for o in _options(html, "reservation") if "selected" in o]
    assert len(chosen) == 1 and str(reservation.pk) in chosen[0]
    regions = _options(html, "region")
    assert len(regions) == 1 and "us-east-1" in regions[0] and "selected" in regions[0]
    assert "the reservation&#x27;s region" in regions[0] or "the reservation's region" in regions[0]
    # and the on-demand availability table is not shown
    assert 'data-testid="region-availability"' not in html


def test_posting_a_reservation_launches_into_it(client, user, org, notebook_setup):
    # given an active reservation
    reservation = _reserve(org, notebook_setup)
    client.force_login(user)
    # when the form is posted with it, and a region it is not in
    reply = client.post(_url(org), _post(notebook_setup, region="eu-north-1", reservation=str(reservation.pk)))
    # then the instance is launched into it, in its region, on GPUs of its gang
    assert reply.status_code == 302, reply.content.decode()[:2000]
    instance = Instance.objects.select_related("allocation", "region").get(name="on-reservation")
    assert instance.reservation_id == reservation.pk
    assert instance.region.code == "us-east-1"
    assert instance.allocation.gang_id == reservation.gang_id


def test_a_full_reservation_is_a_form_error_with_the_reason_and_nothing_is_made(
    client, user, org, notebook_setup, launch
):
    # given an active reservation of 1 GPU, lent to an instance already
    reservation = _reserve(org, notebook_setup, gpus=1)
    launch(name="nb-1", schedule=False, reservation=reservation.pk)
    client.force_login(user)
    # when the form is drawn, the reservation is listed but off
    html = client.get(_url(org), {"flavor": notebook_setup["flavor"].pk}).content.decode()
    listed = next(o for o in _options(html, "reservation") if str(reservation.pk) in o)
    assert "0 GPUs free" in listed and "disabled" in listed
    # and when a launch into it is posted anyway (an old tab)
    reply = client.post(_url(org), _post(notebook_setup, reservation=str(reservation.pk)))
    # then the launch's reason is under "Run on", and no instance was made
    assert reply.status_code == 400
    error = re.search(r'data-testid="error-reservation">(.*?)</span>', reply.content.decode(), re.S).group(1)
    assert f"All 1 GPUs of reservation {reservation.pk} are in use by your instances nb-1." in error
    assert list(Instance.objects.values_list("name", flat=True)) == ["nb-1"]


def test_a_reservation_that_ended_meanwhile_is_a_form_error_and_nothing_is_made(client, user, org, notebook_setup):
    # given a reservation that was active when the page was drawn, and has ended since
    reservation = _reserve(org, notebook_setup)
    reservation_end(reservation_id=reservation.pk, now=reservation.ends_at)
    client.force_login(user)
    # when a launch into it is posted
    reply = client.post(_url(org), _post(notebook_setup, reservation=str(reservation.pk)))
    # then the form says so under "Run on" (shown though it offers nothing now), and nothing is made
    assert reply.status_code == 400
    html = reply.content.decode()
    error = re.search(r'data-testid="error-reservation">(.*?)</span>', html, re.S).group(1)
    assert "This reservation is ended." in error
    assert not Instance.objects.exists()


def test_the_form_page_reads_as_many_queries_with_three_reservations_as_with_none(client, user, org, notebook_setup):
    client.force_login(user)
    url = _url(org)
    # given no reservation: the page's queries
    with CaptureQueriesContext(connection) as none:
        assert client.get(url).status_code == 200
    # when the organization has three active reservations
    reservations = [_reserve(org, notebook_setup, gpus=2) for _ in range(3)]
    with CaptureQueriesContext(connection) as three:
        html = client.get(url).content.decode()
    # then all three are offered, in as many queries as none were
    assert all(str(r.pk) in _select(html, "reservation") for r in reservations)
    assert len(three.captured_queries) == len(none.captured_queries)
