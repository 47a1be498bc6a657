"""Rate limits of signing in, signing up, password resets (allauth's, counted in Redis) and of
failed API key attempts. Every test comes from an address of its own, so counts never leak
between tests."""

from __future__ import annotations

import random
import uuid

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts import services
from apps.accounts.selectors import organization_access_get
from tests.factories.accounts import UserFactory

pytestmark = pytest.mark.django_db
PASSWORD = "a-good-password-123"


def address() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def email() -> str:
    return f"rl-{uuid.uuid4().hex[:12]}@example.com"


@pytest.fixture
def browser() -> Client:
    return Client(REMOTE_ADDR=address())


def limits(settings, **rates):
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, **rates}


def test_every_sign_in_path_is_limited_by_default():
    configured = settings.ACCOUNT_RATE_LIMITS
    for action in ("login", "login_failed", "signup", "reset_password", "reset_password_from_key"):
        assert "/ip" in configured[action], action
    assert "/key" in configured["login_failed"] and "/key" in configured["reset_password"]


def test_too_many_logins_from_one_address_get_429(browser, settings):
    limits(settings, login="3/m/ip")
    UserFactory(email="someone@example.com")

    answers = [
        browser.post("/accounts/login/", {"login": "someone@example.com", "password": "wrong"}).status_code
        for _ in range(4)
    ]

    assert answers == [200, 200, 200, 429]
    assert b"Too many attempts" in browser.post("/accounts/login/", {"login": "x@example.com", "password": "x"}).content
    # And another address is not affected
    other = Client(REMOTE_ADDR=address()).post("/accounts/login/", {"login": "x@example.com", "password": "x"})
    assert other.status_code == 200


def test_too_many_failed_logins_for_one_account_lock_it_for_a_while(settings):
    limits(settings, login_failed="100/m/ip,3/5m/key")
    user = UserFactory(email=email())
    user.set_password(PASSWORD)
    user.save()

    # When three wrong passwords are tried for the account, each from another address
    for _ in range(3):
        wrong = Client(REMOTE_ADDR=address()).post("/accounts/login/", {"login": user.email, "password": "wrong"})
        assert b"Too many failed login attempts" not in wrong.content

    # Then even the right password is refused for now, with the reason
    right = Client(REMOTE_ADDR=address()).post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    assert right.status_code == 200 and b"Too many failed login attempts" in right.content
    assert "_auth_user_id" not in right.wsgi_request.session


def test_too_many_sign_ups_from_one_address_get_429(browser, settings):
    limits(settings, signup="2/m/ip")

    answers = [
        browser.post("/accounts/signup/", {"email": email(), "password1": PASSWORD, "password2": PASSWORD}).status_code
        for _ in range(3)
    ]

    assert answers[:2] != [429, 429] and answers[2] == 429


def test_too_many_password_resets_for_one_account_get_429(settings, mailoutbox):
    limits(settings, reset_password="100/m/ip,2/m/key")
    user = UserFactory(email=email())

    # When a reset is asked for the same account three times, from different addresses
    answers = [
        Client(REMOTE_ADDR=address()).post("/accounts/password/reset/", {"email": user.email}).status_code
        for _ in range(3)
    ]

    # Then two reset emails went out and the third request was refused
    assert answers[2] == 429 and 429 not in answers[:2]
    assert len([m for m in mailoutbox if user.email in m.to]) == 2


def test_too_many_password_resets_from_one_address_get_429(browser, settings):
    limits(settings, reset_password="2/m/ip,100/m/key")
    users = [UserFactory(email=email()) for _ in range(3)]

    answers = [browser.post("/accounts/password/reset/", {"email": u.email}).status_code for u in users]

    assert answers[2] == 429 and 429 not in answers[:2]


# --- API keys ------------------------------------------------------------------------------------


@pytest.fixture
def key_token(org, user) -> str:
    _, token = services.api_key_create(access=organization_access_get(user=user, slug=org.slug), name="ci")
    return token


def api(remote_addr: str, token: str) -> APIClient:
    client = APIClient(REMOTE_ADDR=remote_addr)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_failed_api_keys_from_one_address_get_429_with_retry_after(key_token, settings):
    settings.API_KEY_FAILURES_PER_ADDRESS = 5
    guesser = address()

    # When one address sends five wrong keys, then a sixth
    answers = [api(guesser, f"nck_{uuid.uuid4().hex[:8]}_wrong").get("/api/v1/me/") for _ in range(6)]

    # Then the first five are 401, and the sixth is 429 with when to come back
    assert [a.status_code for a in answers] == [401] * 5 + [429]
    retry_after = int(answers[-1].headers["Retry-After"])
    assert 1 <= retry_after <= settings.API_KEY_FAILURE_WINDOW_S + 1
    assert "Too many failed API key attempts" in answers[-1].json()["detail"]
    # And a valid key from another address is not slowed
    assert api(address(), key_token).get("/api/v1/me/").status_code == 200


def test_a_valid_key_is_never_counted(key_token, settings):
    settings.API_KEY_FAILURES_PER_ADDRESS = 3
    settings.API_KEY_FAILURES_PER_PREFIX = 3
    caller = address()

    answers = [api(caller, key_token).get("/api/v1/me/").status_code for _ in range(10)]

    assert answers == [200] * 10


def test_guessing_one_keys_secret_gets_429_but_never_locks_out_its_owner(key_token, settings):
    settings.API_KEY_FAILURES_PER_PREFIX = 3
    prefix = key_token.split("_")[1]

    # When wrong secrets for a real key's prefix come from many addresses
    answers = [api(address(), f"nck_{prefix}_{uuid.uuid4().hex}").get("/api/v1/me/").status_code for _ in range(4)]

    # Then the guesses are refused, at the limit with 429
    assert answers == [401, 401, 429, 429]
    # And the key's owner, with the right secret, still gets in
    assert api(address(), key_token).get("/api/v1/me/").status_code == 200
