"""allauth's pages and mail in the portal's look and under the product's name, not the host's."""

import pytest
from allauth.account.models import EmailAddress, EmailConfirmationHMAC
from django.core import mail

from tests.factories.accounts import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "a-Long-passphrase-7"


@pytest.mark.parametrize(
    "url,heading,button",
    [
        ("/accounts/login/", "Log in to Neocloud", "Log in"),
        ("/accounts/signup/", "Create your Neocloud account", "Sign up"),
        ("/accounts/password/reset/", "Reset your password", "Send the reset link"),
    ],
)
def test_entrance_pages_are_a_card_with_labelled_fields_a_primary_button_and_links(client, url, heading, button):
    response = client.get(url)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'class="card auth-card"' in html and f"<h1>{heading}</h1>" in html
    assert '<label for="id_email"' in html or '<label for="id_login"' in html
    assert f'<button class="btn btn-primary" type="submit">{button}</button>' in html
    assert 'class="topbar"' in html  # inside the portal's own layout
    # Links to the other entrance pages, not to the page itself.
    links = [u for u in ("/accounts/login/", "/accounts/signup/", "/accounts/password/reset/") if u != url]
    assert f'href="{url}"' not in html.split('<p class="auth-links')[1]
    assert all(f'href="{link}"' in html for link in links)


def test_a_bad_login_shows_the_error_inside_the_card(client):
    UserFactory(email="known@x.test")
    response = client.post("/accounts/login/", {"login": "known@x.test", "password": "wrong-password-1"})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'class="errorlist' in html and "not correct" in html


def test_the_verification_mail_names_the_product_and_signs_off_without_the_host_greeting(client):
    # Given a sign-up from whatever host the browser used
    client.post(
        "/accounts/signup/",
        {"email": "new@x.test", "password1": PASSWORD, "password2": PASSWORD},
        HTTP_HOST="127.0.0.1",
    )
    # Then the mail says the product's name, and never greets from the host
    (message,) = mail.outbox
    assert message.subject == "[Neocloud] Confirm your email address"
    assert "Neocloud" in message.from_email
    assert "signed up for Neocloud" in message.body
    assert "The Neocloud team" in message.body
    assert "/accounts/confirm-email/" in message.body
    assert "Hello from" not in message.body and "127.0.0.1!" not in message.body


def test_the_verification_page_says_to_check_the_mail(client):
    response = client.post("/accounts/signup/", {"email": "n2@x.test", "password1": PASSWORD, "password2": PASSWORD},
                           follow=True)
    assert "Verify your email address" in response.content.decode()


def test_the_product_name_comes_from_one_setting(client, settings):
    UserFactory(email="reset@x.test")
    settings.SITE_NAME = "Acme GPU"
    client.post("/accounts/password/reset/", {"email": "reset@x.test"})
    (message,) = mail.outbox
    assert "your Acme GPU account" in message.body and "The Acme GPU team" in message.body
    assert "/accounts/password/reset/key/" in message.body


def test_the_confirm_page_has_a_confirm_button(client):
    user = UserFactory(email="c@x.test")
    address, _ = EmailAddress.objects.get_or_create(user=user, email=user.email, defaults={"verified": False})
    address.verified = False
    address.save()
    key = EmailConfirmationHMAC(address).key
    html = client.get(f"/accounts/confirm-email/{key}/").content.decode()
    assert '<button class="btn btn-primary" type="submit">Confirm</button>' in html
