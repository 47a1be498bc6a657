import pytest

from tests.support.mail import wait_for_link

pytestmark = pytest.mark.browser


def sign_up_and_verify(page, base_url: str, email: str, password: str) -> None:
    """The real sign-up: the form, then the link from the verification email."""
    page.goto(f"{base_url}/accounts/signup/")
    page.fill("main input[name=email]", email)
    page.fill("main input[name=password1]", password)
    page.fill("main input[name=password2]", password)
    page.locator("main").get_by_role("button", name="Sign up").click()
    page.get_by_text("Verify your email address").first.wait_for()
    link = wait_for_link(to=email, pattern=r"https?://\S+/accounts/confirm-email/[^\s/]+/")
    page.goto(link)
    page.locator("main").get_by_role("button", name="Confirm").click()


def log_in(page, base_url: str, email: str, password: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("main input[name=login]", email)
    page.fill("main input[name=password]", password)
    page.locator("main").get_by_role("button", name="Log in").click()
    page.get_by_test_id("signed-in-as").wait_for()


def log_out(page) -> None:
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("link", name="Log in").wait_for()


def card_fill(page, number: str) -> None:
    """Type a card into the Stripe Elements stand-in's inputs, as a person would."""
    element = page.get_by_test_id("card-element")
    element.get_by_placeholder("number").fill(number)
    element.get_by_placeholder("exp_month").fill("12")
    element.get_by_placeholder("exp_year").fill("34")
    element.get_by_placeholder("cvc").fill("123")
    element.get_by_placeholder("postal_code").fill("10115")
