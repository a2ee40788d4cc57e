"""Where a newcomer lands: `/` (also the admin's "View site") and `/api/` lead somewhere
useful, for anyone, in a browser or not."""

import pytest
from django.test import Client

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_the_start_page_links_to_the_docs_the_api_the_admin_and_health():
    page = Client().get("/")

    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    html = page.content.decode()
    for link in ('href="/api/docs/"', 'href="/api/"', 'href="/admin/"', 'href="/api/health/"'):
        assert link in html, link


@pytest.mark.parametrize("embedded, shown", [(True, True), (False, False)])
def test_the_demo_logins_are_shown_only_in_the_embedded_demo(settings, embedded, shown):
    settings.EMBEDDED = embedded

    html = Client().get("/").content.decode()

    assert ("<code>customer</code> / <code>customer</code>" in html) is shown


def test_the_admin_view_site_link_leads_to_the_start_page(admin_client):
    index = admin_client.get("/admin/").content.decode()

    assert 'href="/"' in index
    assert admin_client.get("/").status_code == 200


def test_the_api_root_lists_every_endpoint_for_anyone(api_client):
    response = api_client.get("/api/")

    assert response.status_code == 200
    links = response.json()
    assert set(links) >= {
        "products",
        "categories",
        "orders",
        "stock",
        "auth-token",
        "docs",
        "schema",
        "health",
    }
    assert links["orders"] == "http://testserver/api/orders/"
    assert links["auth-token"] == "http://testserver/api/auth/token/"


def test_the_api_root_needs_no_login_but_the_lists_still_do(api_client):
    assert api_client.get("/api/").status_code == 200
    assert api_client.get("/api/orders/").status_code == 401
