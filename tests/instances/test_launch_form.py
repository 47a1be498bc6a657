"""The launch form offers only what can run, preselects a region with free capacity, shows the
price and the free count per region, and says why a choice is off; billing's gate comes first."""

import re

import pytest

from apps.catalog.models import Flavor, Region
from apps.instances.models import Instance, InstanceState
from tests.factories.capacity import node_with_gpus

pytestmark = pytest.mark.django_db
S = InstanceState


def _page(client, org, **params):
    return client.get(f"/orgs/{org.slug}/instances/new/", params)


def _options(html: str, name: str) -> list[str]:
    select = re.search(rf'<select name="{name}".*?</select>', html, re.S).group(0)
    return re.findall(r"<option[^>]*>[^<]*</option>", select)


def test_only_launchable_flavors_and_images_that_run_them_are_offered(client, user, org, notebook_setup):
    client.force_login(user)
    html = _page(client, org).content.decode()
    flavors = " ".join(_options(html, "flavor"))
    assert "Notebook · 1× H100 80GB" in flavors
    assert "GPU instances · 1× H100 80GB" in flavors  # reached over SSH: the form has a key picker
    assert "Ray" not in flavors and "Kubeflow" not in flavors
    images = " ".join(_options(html, "image"))
    assert "JupyterLab 4 (node" in images
    assert "Ray" not in images and "Kubeflow" not in images and "Ubuntu" not in images


def test_the_default_region_is_one_with_free_capacity_and_shows_price_and_count(client, user, org, notebook_setup):
    # Given capacity only in us-east-1 (eu-north-1 sorts first and has none)
    client.force_login(user)
    html = _page(client, org).content.decode()
    regions = _options(html, "region")
    selected = [o for o in regions if "selected" in o]
    assert len(selected) == 1 and "us-east-1" in selected[0]
    assert "8 free" in selected[0] and "$2.49" in selected[0]
    north = next(o for o in regions if "eu-north-1" in o)
    assert "disabled" in north and "sold out in eu-north-1" in north
    assert 'data-testid="region-availability"' in html


def test_a_flavor_sold_out_everywhere_is_disabled_with_the_reason(client, user, org, notebook_setup):
    client.force_login(user)
    html = _page(client, org).content.decode()
    l40s = next(o for o in _options(html, "flavor") if "L40S" in o)
    assert "disabled" in l40s and "sold out in every region" in l40s


def test_choosing_a_flavor_preselects_the_region_where_it_is_free(client, user, org, notebook_setup):
    l40s = Flavor.objects.get(slug="notebook-1x-l40s")
    node_with_gpus(Region.objects.get(code="eu-west-1"), l40s.gpu_model, n=2)
    client.force_login(user)
    html = _page(client, org, flavor=l40s.pk, region="us-east-1").content.decode()
    selected = [o for o in _options(html, "region") if "selected" in o]
    assert "eu-west-1" in selected[0] and "2 free" in selected[0]


def test_posting_a_sold_out_region_puts_the_error_under_the_region(client, user, org, notebook_setup):
    client.force_login(user)
    data = {
        "flavor": notebook_setup["flavor"].pk,
        "region": "eu-north-1",
        "image": notebook_setup["image"].pk,
        "name": "north",
    }
    reply = client.post(f"/orgs/{org.slug}/instances/new/", data)
    assert reply.status_code == 400
    html = reply.content.decode()
    error = re.search(r'data-testid="error-region">(.*?)</span>', html, re.S).group(1)
    assert "Sold out in eu-north-1" in error
    assert html.count("Sold out in eu-north-1") == 1
    assert not Instance.objects.exists()


def test_the_defaults_launch(client, user, org, notebook_setup):
    client.force_login(user)
    html = _page(client, org).content.decode()
    pick = {
        name: re.search(r'value="([^"]+)"[^>]*selected', " ".join(_options(html, name))).group(1)
        for name in ("flavor", "region", "image")
    }
    reply = client.post(f"/orgs/{org.slug}/instances/new/", {**pick, "name": "defaults"})
    assert reply.status_code == 302, reply.content.decode()[:2000]
    assert Instance.objects.get(name="defaults").state == S.REQUESTED


def test_a_sold_out_region_may_be_chosen_to_wait_in_the_queue(client, user, org, notebook_setup):
    client.force_login(user)
    data = {
        "flavor": notebook_setup["flavor"].pk,
        "region": "eu-north-1",
        "image": notebook_setup["image"].pk,
        "name": "patient",
        "queue": "on",
    }
    reply = client.post(f"/orgs/{org.slug}/instances/new/", data)
    assert reply.status_code == 302
    assert Instance.objects.get(name="patient").state == S.QUEUED
