"""The accounts lists on the UI toolkit's table (apps/accounts/tables.py): members (live, with the
page's sort on its socket), API keys and the user's organizations; sorted, paginated, in a number
of queries that does not grow with the rows, never another tenant's rows."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import ApiKey, Role
from apps.accounts.selectors import organization_access_get
from apps.accounts.services import api_key_create
from tests.factories.accounts import MembershipFactory, OrganizationFactory, UserFactory
from tests.support.live import consumer_for, live_page_read

pytestmark = pytest.mark.django_db


def attr_values(html: str, attr: str) -> list[str]:
    return re.findall(rf'<tr[^>]*{attr}="([^"]+)"', html)


@pytest.fixture
def owner():
    return UserFactory(email="aaa-owner@example.test")


@pytest.fixture
def org(owner):
    return OrganizationFactory(owner=owner)


@pytest.fixture
def browser(client, owner):
    client.force_login(owner)
    return client


def queries(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, params or {}).status_code == 200
    return len(captured.captured_queries)


def test_members_sort_by_email_and_page_past_fifty(browser, org):
    for n in range(55):
        MembershipFactory(organization=org, user=UserFactory(email=f"m{n:02d}@example.test"))
    url = reverse("accounts:members", args=[org.slug])

    first = browser.get(url, {"sort": "email"}).content.decode()
    second = browser.get(url, {"sort": "email", "page": 2}).content.decode()

    assert attr_values(first, "data-member")[:2] == ["aaa-owner@example.test", "m00@example.test"]
    assert len(attr_values(first, "data-member")) == 50
    assert attr_values(second, "data-member") == [f"m{n:02d}@example.test" for n in range(49, 55)]
    assert "Page 2 of 2" in second


def test_members_page_costs_the_same_queries_for_3_or_30_members(browser, org):
    url = reverse("accounts:members", args=[org.slug])
    MembershipFactory.create_batch(2, organization=org)
    few = queries(browser, url)
    MembershipFactory.create_batch(27, organization=org)
    assert queries(browser, url) == few


def test_the_members_socket_renders_the_page_with_its_sort(owner, org):
    MembershipFactory.create_batch(3, organization=org)
    client = Client()
    client.force_login(owner)
    page = live_page_read(client, reverse("accounts:members", args=[org.slug]) + "?sort=-email")
    assert page.socket_path.endswith("/members/?sort=-email")

    consumer = consumer_for(page.announce(), user=owner)

    assert consumer.version() == page.version
    assert attr_values(consumer.render(), "data-member")[-1] == "aaa-owner@example.test"


def test_a_member_sees_no_role_forms_in_the_table(client, org):
    member = MembershipFactory(organization=org, role=Role.MEMBER).user
    client.force_login(member)

    html = client.get(reverse("accounts:members", args=[org.slug])).content.decode()

    assert "Change</button>" not in html and "Remove</button>" not in html
    row = html.split(f'data-member="{member.email}"')[1].split("</tr>")[0]
    assert '<td data-testid="role">member</td>' in row
    assert "Leave</button>" in html  # their own row


def _keys(org, owner, count):
    access = organization_access_get(user=owner, slug=org.slug)
    for _ in range(count):
        api_key_create(access=access, name=f"key-{ApiKey.objects.count():02d}", role=Role.MEMBER,
                       expires_at=timezone.now() + timedelta(days=30))


def test_api_keys_table_revokes_with_a_working_form_in_constant_queries(org, owner):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    url = reverse("accounts:api-keys", args=[org.slug])
    _keys(org, owner, 3)
    few = queries(browser, url)
    _keys(org, owner, 27)
    assert queries(browser, url) == few

    html = browser.get(url, {"sort": "name"}).content.decode()
    assert attr_values(html, "data-key")[:2] == ["key-00", "key-01"] and "Page 1 of 2" in html
    row = html.split('data-key="key-00"')[1].split("</tr>")[0]
    assert 'data-testid="key-status"' in row and ">active<" in row
    token = row.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    key = ApiKey.objects.get(name="key-00")
    response = browser.post(reverse("accounts:api-key-revoke", args=[org.slug, key.pk]), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_organization_list_shows_only_mine_in_constant_queries(browser, owner):
    url = reverse("accounts:organization-list")
    stranger = OrganizationFactory(owner=UserFactory(), name="Not Mine")
    for n in range(2):
        OrganizationFactory(owner=owner, name=f"Mine {n}")
    few = queries(browser, url)
    for n in range(2, 29):
        OrganizationFactory(owner=owner, name=f"Mine {n:02d}")

    assert queries(browser, url) == few
    html = browser.get(url, {"sort": "name"}).content.decode()
    assert stranger.slug not in attr_values(html, "data-organization") and "Not Mine" not in html
    assert "Page 1 of 2" in html
