"""The first-run checklist on the page a user lands on after login: each item ticked from real
state, gone when all four are done or once dismissed."""

import pytest
from allauth.account.models import EmailAddress
from django.urls import reverse

from apps.accounts.selectors import organization_access_get
from apps.accounts.services import api_key_create
from apps.billing.models import CreditGrant, CreditKind, PaymentMethod
from apps.billing.selectors.onboarding import onboarding_checklist_get
from apps.catalog.models import OfferingKind
from tests.factories.accounts import OrganizationFactory, UserFactory
from tests.factories.billing import BillingAccountFactory, InstanceFactory
from tests.factories.catalog import FlavorFactory, OfferingFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def newcomer():
    user = UserFactory()
    EmailAddress.objects.filter(user=user).delete()
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    return user, OrganizationFactory(owner=user)


def _card(organization):
    PaymentMethod.objects.create(
        account=BillingAccountFactory(organization=organization), stripe_payment_method_id=f"pm_{organization.pk}",
        brand="visa", last4="4242", exp_month=12, exp_year=2099, is_default=True,
    )


def _notebook(organization, owner):
    flavor = FlavorFactory(offering=OfferingFactory(kind=OfferingKind.NOTEBOOK))
    InstanceFactory(organization=organization, owner=owner, flavor=flavor)


def test_a_new_user_has_only_the_email_ticked(newcomer):
    user, organization = newcomer
    checklist = onboarding_checklist_get(user=user, organization=organization)
    assert [(s.key, s.done) for s in checklist.steps] == [
        ("email", True), ("payment", False), ("notebook", False), ("api_key", False)]
    assert checklist.visible


def test_an_unverified_address_is_not_ticked():
    user = UserFactory()
    EmailAddress.objects.filter(user=user).update(verified=False)
    assert not onboarding_checklist_get(user=user, organization=OrganizationFactory(owner=user)).email_verified


def test_each_item_follows_its_own_state(newcomer):
    user, organization = newcomer
    _card(organization)
    assert onboarding_checklist_get(user=user, organization=organization).payment_ready
    # A launch of another kind is not a notebook
    InstanceFactory(organization=organization, owner=user)
    assert not onboarding_checklist_get(user=user, organization=organization).notebook_launched
    _notebook(organization, user)
    assert onboarding_checklist_get(user=user, organization=organization).notebook_launched
    api_key_create(access=organization_access_get(user=user, slug=organization.slug), name="ci")
    checklist = onboarding_checklist_get(user=user, organization=organization)
    assert checklist.complete and not checklist.visible


def test_credits_count_as_a_payment_method(newcomer):
    user, organization = newcomer
    CreditGrant.objects.create(account=BillingAccountFactory(organization=organization), kind=CreditKind.choices[0][0],
                               amount="10.00", currency="USD", description="welcome")
    assert onboarding_checklist_get(user=user, organization=organization).payment_ready


def test_another_organizations_card_does_not_count(newcomer):
    user, organization = newcomer
    _card(OrganizationFactory())
    assert not onboarding_checklist_get(user=user, organization=organization).payment_ready


def test_the_landing_page_shows_the_checklist_with_links(client, newcomer):
    user, organization = newcomer
    client.force_login(user)
    response = client.get(reverse("accounts:dashboard"), follow=True)
    html = response.content.decode()
    assert 'data-testid="onboarding-checklist"' in html
    assert 'data-testid="onboarding-email" data-done="true"' in html
    assert 'data-testid="onboarding-payment" data-done="false"' in html
    assert reverse("billing-card-add", args=[organization.slug]) in html
    assert reverse("instances:launch", args=[organization.slug]) in html
    assert reverse("accounts:api-keys", args=[organization.slug]) in html


def test_the_checklist_is_one_query(newcomer, django_assert_num_queries):
    user, organization = newcomer
    with django_assert_num_queries(1):
        onboarding_checklist_get(user=user, organization=organization)


def test_dismissing_hides_it_for_good(client, newcomer):
    user, organization = newcomer
    client.force_login(user)
    page = reverse("accounts:organization-detail", args=[organization.slug])
    response = client.post(reverse("onboarding-dismiss"), {"next": page})
    assert response.status_code == 302 and response["Location"] == page
    assert 'data-testid="onboarding-checklist"' not in client.get(page).content.decode()
    client.logout()
    client.force_login(user)
    assert 'data-testid="onboarding-checklist"' not in client.get(page).content.decode()


def test_dismiss_refuses_an_outside_next_and_get(client, newcomer):
    user, _ = newcomer
    client.force_login(user)
    assert client.get(reverse("onboarding-dismiss")).status_code == 405
    response = client.post(reverse("onboarding-dismiss"), {"next": "https://evil.example/"})
    assert response["Location"] == reverse("accounts:dashboard")


def test_all_done_hides_it(client, newcomer):
    user, organization = newcomer
    _card(organization)
    _notebook(organization, user)
    api_key_create(access=organization_access_get(user=user, slug=organization.slug), name="ci")
    client.force_login(user)
    html = client.get(reverse("accounts:organization-detail", args=[organization.slug])).content.decode()
    assert 'data-testid="onboarding-checklist"' not in html
