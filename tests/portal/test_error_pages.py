"""The portal's own error pages (DEBUG is off in tests, as in `make run`) and /favicon.ico."""

import pytest
from django.test import RequestFactory

from portal.views import server_error

pytestmark = pytest.mark.django_db


def test_an_unknown_page_gets_our_404_with_a_link_home(client):
    response = client.get("/no-such-page")
    html = response.content.decode()
    assert response.status_code == 404
    assert "<h1>Page not found</h1>" in html and 'href="/"' in html
    assert 'class="topbar"' in html  # the portal's layout, not Django's technical page
    assert "URLconf" not in html


def test_an_unknown_api_url_answers_json(client):
    response = client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_the_500_page_renders_without_the_request_context_and_links_home():
    response = server_error(RequestFactory().get("/somewhere"))
    html = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in html and 'href="/"' in html


def test_an_api_500_answers_json():
    response = server_error(RequestFactory().get("/api/v1/somewhere"))
    assert response.status_code == 500 and response["Content-Type"] == "application/json"


def test_favicon_ico_points_at_the_svg_icon_which_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response["Location"] == "/static/favicon.svg"
    assert "max-age=86400" in response["Cache-Control"]
    icon = client.get(response["Location"])
    assert icon.status_code == 200 and icon["Content-Type"] == "image/svg+xml"
