"""The admin site as a whole: its name, the order of its apps, the stylesheet that keeps
statuses readable in both themes, and django-celery-beat's periodic task screen."""

import json
import re
import threading
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django_celery_beat.models import PeriodicTask

from core.admin import ADMIN_CSS

pytestmark = pytest.mark.django_db

# Every task the web process must offer for a schedule (orders/tasks.py, inventory/tasks.py).
REGISTERED = {
    "inventory.sync_warehouse",
    "orders.fulfil_order",
    "orders.process_order",
    "orders.process_ready",
    "orders.purge_idempotency_keys",
    "orders.reconcile",
}
STYLESHEET = Path(__file__).resolve().parents[1] / "static" / ADMIN_CSS
TONES = ["muted", "info", "ok", "done", "warn", "bad"]


@pytest.fixture
def admin_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    return client


def registered_task_options(page: str) -> list[tuple[str, bool]]:
    select = re.search(r'<select name="regtask".*?</select>', page, re.S)
    assert select, "no Task (registered) select"
    return [
        (value, bool(selected))
        for value, selected in re.findall(
            r'<option value="([^"]*)"( selected)?>', select.group(0), re.S
        )
        if value
    ]


def test_the_site_has_its_own_name(admin_client):
    page = admin_client.get("/admin/").content.decode()

    assert "<title>Operations overview | Order operations</title>" in page
    assert "Order processing · operations" in page
    assert "Django administration" not in page and "Django site admin" not in page


def test_index_lists_orders_first_and_the_plumbing_last(admin_client):
    page = admin_client.get("/admin/").content.decode()

    apps = re.findall(r'<div class="app-(\w+) module', page)
    assert apps == [
        "orders",
        "inventory",
        "catalog",
        "payments",
        "webhooks",
        "authtoken",
        "auth",
        "django_celery_beat",
    ]
    orders_models = re.search(r'<div class="app-orders module.*?</table>', page, re.S).group(0)
    assert re.findall(r'<th scope="row" id="orders-(\w+)">', orders_models) == [
        "order",
        "orderlog",
    ]


def test_the_side_navigation_keeps_the_same_order(admin_client):
    page = admin_client.get("/admin/orders/order/").content.decode()

    apps = re.findall(r'<div class="app-(\w+) module', page)
    assert apps.index("orders") == 0 and apps[-1] == "django_celery_beat"
    assert apps.index("authtoken") > apps.index("payments")


def test_periodic_task_add_page_lists_the_registered_tasks(admin_client):
    page = admin_client.get("/admin/django_celery_beat/periodictask/add/").content.decode()

    assert {name for name, _ in registered_task_options(page)} >= REGISTERED


@pytest.mark.django_db(transaction=True)
def test_periodic_task_add_page_lists_them_when_served_by_another_thread(admin_client):
    """gunicorn's gthread workers (Procfile) and runserver answer in threads other than the one
    that made the Celery app: the select reads Celery's current app there too."""
    pages = []

    def serve() -> None:
        try:
            pages.append(
                admin_client.get("/admin/django_celery_beat/periodictask/add/").content.decode()
            )
        finally:
            connections.close_all()  # this thread's own connection

    thread = threading.Thread(target=serve)
    thread.start()
    thread.join(timeout=30)

    assert {name for name, _ in registered_task_options(pages[0])} >= REGISTERED


def test_a_periodic_tasks_page_selects_its_registered_task(admin_client):
    # given: the schedule every deployment has (settings.PERIODIC_TASKS)
    task = PeriodicTask.objects.get(name="warehouse-sync")

    # when
    page = admin_client.get(f"/admin/django_celery_beat/periodictask/{task.pk}/change/")

    # then: the registered task is the one selected, "custom" left for names the web lacks
    selected = [name for name, chosen in registered_task_options(page.content.decode()) if chosen]
    assert selected == ["inventory.sync_warehouse"]
    custom = re.search(r'<input type="text" name="task"[^>]*>', page.content.decode()).group(0)
    assert "value=" not in custom


def test_saving_a_periodic_task_keeps_its_task(admin_client):
    task = PeriodicTask.objects.get(name="warehouse-sync")
    form = {
        "name": task.name,
        "regtask": "inventory.sync_warehouse",
        "task": "",
        "enabled": "on",
        "description": task.description,
        "interval": task.interval_id,
        "args": "[]",
        "kwargs": json.dumps({"trigger": "beat"}),
        "headers": "{}",
        "_save": "Save",
    }

    response = admin_client.post(f"/admin/django_celery_beat/periodictask/{task.pk}/change/", form)

    assert response.status_code == 302, response.content.decode()[:2000]
    task.refresh_from_db()
    assert task.task == "inventory.sync_warehouse"


# --- Status colours in both themes -------------------------------------------------------


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    light, dark = sorted([_luminance(a), _luminance(b)], reverse=True)
    return (light + 0.05) / (dark + 0.05)


def theme_blocks() -> dict[str, dict[str, str]]:
    """Each theme's colour of every custom property: `light-dark(#light, #dark)`, or one
    colour for both (Django's admin sets the color-scheme light-dark() reads, for the
    system's preference and for its theme toggle alike)."""
    css = STYLESHEET.read_text()
    themes: dict[str, dict[str, str]] = {"light": {}, "dark": {}}
    colour = r"(#[0-9a-fA-F]{6})"
    pattern = rf"(--ops-[\w-]+):\s*(?:light-dark\(\s*{colour},\s*{colour}\s*\)|{colour})"
    for name, light, dark, both in re.findall(pattern, css):
        themes["light"][name], themes["dark"][name] = (light, dark) if light else (both, both)
    assert themes["light"], "the theme colours are missing"
    return themes


@pytest.mark.parametrize("tone", TONES)
def test_every_status_badge_reads_in_light_and_dark(tone):
    # Django's admin page backgrounds: #fff light, #121212 dark (its dark_mode.css).
    for theme, colours in theme_blocks().items():
        fg, bg = colours[f"--ops-{tone}-fg"], colours[f"--ops-{tone}-bg"]
        assert contrast(fg, bg) >= 4.5, f"{tone} in {theme}: {fg} on {bg}"


@pytest.mark.parametrize("outcome", ["done", "failed", "cancelled", "in_flight"])
def test_every_chart_colour_stands_out_of_both_backgrounds(outcome):
    page_background = {"light": "#ffffff", "dark": "#121212"}
    for theme, colours in theme_blocks().items():
        fill = colours[f"--ops-chart-{outcome}"]
        assert contrast(fill, page_background[theme]) >= 3, f"{outcome} in {theme}: {fill}"
