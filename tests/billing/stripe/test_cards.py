"""Cards against the real localstripe: the SetupIntent is confirmed over HTTP exactly as the
browser's Stripe.js does, then the server checks it with Stripe, attaches and stores the card."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from apps.accounts.models import Role
from apps.billing.models import PaymentMethod
from apps.billing.selectors.cards import payment_method_usable_get
from apps.billing.services.accounts import billing_account_get_or_create
from apps.billing.services.cards import (
    card_default_set,
    card_remove,
    card_setup_confirm,
    card_setup_intent_create,
)
from apps.billing.services.customers import stripe_customer_ensure
from apps.billing.stripe_api import stripe_client
from tests.factories.accounts import OrganizationFactory, UserFactory

from .conftest import CARD_DECLINED, CARD_OK, setup_intent_confirm_as_browser

pytestmark = pytest.mark.django_db


def card_add(account, number: str = CARD_OK) -> PaymentMethod:
    """The whole add-card flow: SetupIntent on the server, confirmation as the browser, check + attach."""
    intent = card_setup_intent_create(account=account)
    status, answer = setup_intent_confirm_as_browser(
        setup_intent_id=intent.id, client_secret=intent.client_secret, number=number
    )
    assert status == 200, answer
    return card_setup_confirm(account=account, setup_intent_id=intent.id)


def stripe_default_of(account) -> str | None:
    customer = stripe_client().v1.customers.retrieve(account.stripe_customer_id)
    return customer.invoice_settings.default_payment_method


def test_the_stripe_customer_is_created_once_with_the_organization_in_its_metadata(account, organization):
    # When the customer is ensured twice, the second time from a stale copy of the account
    first = stripe_customer_ensure(account=account)
    stale = billing_account_get_or_create(organization=organization)
    stale.stripe_customer_id = None
    second = stripe_customer_ensure(account=stale)

    # Then there is one customer (the same Idempotency-Key), and it names the organization
    assert first == second == account.stripe_customer_id
    customer = stripe_client().v1.customers.retrieve(first)
    assert customer.metadata["organization_id"] == str(organization.pk)
    assert customer.metadata["organization_slug"] == organization.slug


def test_a_confirmed_card_is_attached_stored_and_made_the_default(account):
    # When a card is added through a SetupIntent confirmed as the browser does
    card = card_add(account)

    # Then it is stored with what the page shows, attached to the customer and the default, here and at Stripe
    assert (card.brand, card.last4, card.exp_month, card.exp_year, card.is_default) == ("visa", "4242", 12, 2034, True)
    assert stripe_client().v1.payment_methods.retrieve(card.stripe_payment_method_id).customer == (
        account.stripe_customer_id
    )
    assert stripe_default_of(account) == card.stripe_payment_method_id
    assert payment_method_usable_get(account=account) == card


def test_confirming_the_same_setup_intent_twice_stores_one_card(account):
    intent = card_setup_intent_create(account=account)
    setup_intent_confirm_as_browser(setup_intent_id=intent.id, client_secret=intent.client_secret, number=CARD_OK)

    first = card_setup_confirm(account=account, setup_intent_id=intent.id)
    again = card_setup_confirm(account=account, setup_intent_id=intent.id)

    assert first.pk == again.pk
    assert PaymentMethod.objects.filter(account=account).count() == 1


def test_a_second_card_becomes_default_only_when_asked(account):
    first = card_add(account)
    second = card_add(account)
    second.refresh_from_db()
    assert not second.is_default and stripe_default_of(account) == first.stripe_payment_method_id

    card_default_set(account=account, card=second)

    first.refresh_from_db()
    second.refresh_from_db()
    assert second.is_default and not first.is_default
    assert stripe_default_of(account) == second.stripe_payment_method_id


def test_removing_the_default_promotes_the_next_card_and_removing_the_last_leaves_none(account):
    older = card_add(account)
    newer = card_add(account)

    # When the default card is removed
    card_remove(account=account, card=older)

    # Then it is detached at Stripe and marked so here, and the other card takes over
    older.refresh_from_db()
    newer.refresh_from_db()
    assert older.detached_at is not None and not older.is_default
    assert stripe_client().v1.payment_methods.retrieve(older.stripe_payment_method_id).customer is None
    assert newer.is_default and stripe_default_of(account) == newer.stripe_payment_method_id

    # And when the last card goes, there is no default anywhere
    card_remove(account=account, card=newer)
    assert payment_method_usable_get(account=account) is None
    assert stripe_default_of(account) is None


def test_a_declined_card_gives_stripes_message_and_stores_nothing(account):
    intent = card_setup_intent_create(account=account)

    # When the browser confirms a card the bank declines
    status, answer = setup_intent_confirm_as_browser(
        setup_intent_id=intent.id, client_secret=intent.client_secret, number=CARD_DECLINED
    )

    # Then Stripe's answer is the clear message the page shows
    assert status == 402 and answer["error"]["message"] == "Your card was declined."
    # And if the page posted the SetupIntent anyway, the server refuses it and stores nothing
    with pytest.raises(ValidationError, match="not confirmed"):
        card_setup_confirm(account=account, setup_intent_id=intent.id)
    assert not PaymentMethod.objects.filter(account=account).exists()


def test_another_accounts_setup_intent_is_refused(account):
    stranger = billing_account_get_or_create(organization=OrganizationFactory(owner=UserFactory()))
    intent = card_setup_intent_create(account=stranger)
    setup_intent_confirm_as_browser(setup_intent_id=intent.id, client_secret=intent.client_secret, number=CARD_OK)

    with pytest.raises(ValidationError, match="another account"):
        card_setup_confirm(
            account=billing_account_get_or_create(organization=account.organization), setup_intent_id=intent.id
        )
    assert not PaymentMethod.objects.exists()


def test_a_made_up_setup_intent_id_is_a_clear_error(account):
    stripe_customer_ensure(account=account)
    with pytest.raises(ValidationError, match="add the card again"):
        card_setup_confirm(account=account, setup_intent_id="seti_doesnotexist")
    with pytest.raises(ValidationError, match="add the card again"):
        card_setup_confirm(account=account, setup_intent_id="")


# --- pages ---------------------------------------------------------------------------------------


def test_the_cards_page_lists_cards_with_the_default_badge(
    client, owner, organization, account, django_assert_max_num_queries
):
    card_add(account)
    card_add(account)
    client.force_login(owner)

    with django_assert_max_num_queries(12):
        response = client.get(reverse("billing-cards", args=[organization.slug]))

    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('data-testid="card-row"') == 2
    assert html.count("<td>visa •••• 4242</td>") == 2
    assert html.count('data-testid="default-badge"') == 1
    assert "12/2034" in html


def test_the_add_page_posts_the_setup_intent_and_the_card_is_saved(client, owner, organization, account):
    client.force_login(owner)
    page = client.get(reverse("billing-card-add", args=[organization.slug]))
    assert page.status_code == 200
    secret = page.context["client_secret"]
    intent_id = secret.split("_secret_")[0]
    setup_intent_confirm_as_browser(setup_intent_id=intent_id, client_secret=secret, number=CARD_OK)

    response = client.post(
        reverse("billing-card-add", args=[organization.slug]), {"setup_intent_id": intent_id}, follow=True
    )

    assert "Card visa •••• 4242 saved. It is the default card." in response.content.decode()
    assert PaymentMethod.objects.filter(account=account, is_default=True).count() == 1


def test_a_bad_setup_intent_post_shows_the_reason_and_a_fresh_form(client, owner, organization, account):
    client.force_login(owner)
    response = client.post(reverse("billing-card-add", args=[organization.slug]), {"setup_intent_id": "nonsense"})
    assert response.status_code == 400
    assert "The card setup is missing" in response.content.decode()
    assert response.context["client_secret"]


def test_make_default_and_remove_through_the_page(client, owner, organization, account):
    first, second = card_add(account), card_add(account)
    client.force_login(owner)

    response = client.post(reverse("billing-card-default", args=[organization.slug, second.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "is now the default card" in response.content.decode()
    second.refresh_from_db()
    assert second.is_default

    client.post(reverse("billing-card-remove", args=[organization.slug, second.pk]))
    first.refresh_from_db()
    assert first.is_default and stripe_default_of(account) == first.stripe_payment_method_id


def test_another_organizations_card_ids_answer_404_and_change_nothing(client, owner, account):
    theirs_owner = UserFactory()
    theirs = billing_account_get_or_create(organization=OrganizationFactory(owner=theirs_owner))
    their_card = card_add(theirs)
    card_add(account)
    client.force_login(owner)
    mine = account.organization.slug

    # My organization's URL with their card's id, and their organization's URL, both answer 404
    assert client.post(reverse("billing-card-default", args=[mine, their_card.pk])).status_code == 404
    assert client.post(reverse("billing-card-remove", args=[mine, their_card.pk])).status_code == 404
    their_slug = theirs.organization.slug
    assert client.post(reverse("billing-card-remove", args=[their_slug, their_card.pk])).status_code == 404
    assert client.get(reverse("billing-cards", args=[their_slug])).status_code == 404

    their_card.refresh_from_db()
    assert their_card.detached_at is None and their_card.is_default


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
def test_roles_that_may_not_manage_billing_are_refused(client, organization, member_of, role):
    client.force_login(member_of(organization, role))
    assert client.get(reverse("billing-cards", args=[organization.slug])).status_code == 403
    assert client.get(reverse("billing-card-add", args=[organization.slug])).status_code == 403


def test_the_billing_role_manages_cards(client, organization, billing_member):
    client.force_login(billing_member)
    assert client.get(reverse("billing-cards", args=[organization.slug])).status_code == 200
