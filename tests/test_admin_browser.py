"""The admin in a real browser: Playwright driving the system's Chromium (Debian's `chromium`,
installed by .ci/run; `playwright install` is never run) against the app served by
pytest-django's live server, with a real Celery worker behind it. An operator logs in, finds
an order, opens it and reads its history, retries a failed order and sees it go through, and
assigns categories with the multi-select; the operator's screens are looked at on a 1366 x 768
laptop, a 390 px phone and in dark mode. Screenshots of every step are kept as test
artifacts in test-artifacts/screenshots/."""

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db.models import F

from catalog.tests.factories import CategoryFactory
from inventory.models import WarehouseSyncRun
from inventory.tests.factories import partial_sync_run, product_in_warehouse
from orders.models import Order
from orders.tests.helpers import log_events, place_order
from tests.live import ROOT
from tests.processes import wait_for

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
PASSWORD = "operator-pw"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"No Chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run does), or "
            "set CHROMIUM_PATH."
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread, which Django's ORM would take
    # for async code; the tests' ORM calls are plain synchronous ones.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1400, "height": 1000}
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_superuser("operator", "op@example.com", PASSWORD)


@pytest.fixture
def shot(page, request):
    """shot("step") saves a full-page screenshot named after the test and the step (of the
    test's page, or of the page given: shot("step", on=other_page))."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    taken = []

    def take(step: str, on=None) -> Path:
        path = SCREENSHOTS / f"{request.node.name}-{len(taken) + 1:02d}-{step}.png"
        (on or page).screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0
        taken.append(path)
        return path

    return take


def log_in(page, operator) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", operator.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


def wait_for_status(order_id: int, *statuses: str) -> Order:
    return wait_for(
        lambda: (o := Order.objects.get(pk=order_id)).status in statuses and o,
        timeout=30,
        message=f"order {order_id} to reach {statuses}",
    )


def test_operator_finds_an_order_and_reads_its_history(
    page, shot, operator, customer, payment_sim, warehouse_sim
):
    # given: an order processed all the way by the worker
    product = product_in_warehouse(warehouse_sim, 10, sku="BROWSER-KB")
    order = place_order(customer, (product.id, 2))
    wait_for_status(order.id, "fulfilled")

    # when: the operator logs in; the index page opens with the last day's summary
    log_in(page, operator)
    shot("index")
    assert page.text_content("#orders-last-24h caption").strip() == "Orders, last 24 h: 1"

    # and finds the order by its id from the orders list
    page.click("a[href='/admin/orders/order/']")
    page.fill("#searchbar", str(order.id))
    page.press("#searchbar", "Enter")
    # (change links carry the list's filters: ?_changelist_filters=...)
    found = f"#result_list a[href^='/admin/orders/order/{order.id}/change/']"
    page.wait_for_selector(found)
    shot("search")
    assert page.locator("#result_list tbody tr").count() == 1

    # and opens it
    page.click(found)
    page.wait_for_selector("#logs-group")
    shot("order")

    # then: its status, its line and its whole history are there
    assert page.inner_text(".field-status .readonly") == "Fulfilled"
    assert "BROWSER-KB" in page.inner_text("#lines-group")
    history = page.inner_text("#logs-group")
    for event in ("created", "reserved", "confirmed", "fulfilled"):
        assert re.search(rf"\b{event}\b", history), history


def test_operator_retries_a_failed_order_and_sees_it_go_through(
    page, shot, operator, customer, payment_sim, warehouse_sim
):
    # given: an order whose payment was declined
    product = product_in_warehouse(warehouse_sim, 10, sku="BROWSER-MS")
    payment_sim.script("decline")
    order = place_order(customer, (product.id, 1))
    assert wait_for_status(order.id, "failed").failure_reason == "payment_declined"

    # when: the operator lists failed orders, selects it and runs "retry"
    log_in(page, operator)
    page.goto("/admin/orders/order/")
    page.locator("details[data-filter-title='status'] a", has_text="Failed").click()
    page.wait_for_url("**status__exact=failed**")
    shot("failed-orders")
    page.check(f"input[name='_selected_action'][value='{order.id}']")
    page.select_option("select[name='action']", "retry_orders")
    page.click("button[name='index']")
    message = page.locator(".messagelist .success")
    message.wait_for()
    shot("retried")
    assert f"Retried order(s) {order.id}: processing again." in message.inner_text()

    # then: the worker takes it through; the operator sees it fulfilled, with its history
    wait_for_status(order.id, "fulfilled")
    page.goto(f"/admin/orders/order/{order.id}/change/")
    shot("order-fulfilled")
    assert page.inner_text(".field-status .readonly") == "Fulfilled"
    history = page.inner_text("#logs-group")
    assert "Retried by operator" in history
    assert [e for e in log_events(order) if e[0] != e[1]][-4:] == [
        ("failed", "pending", "retried"),
        ("pending", "reserved", "reserved"),
        ("reserved", "confirmed", "confirmed"),
        ("confirmed", "fulfilled", "fulfilled"),
    ]
    # both payments are listed: the declined one, and the new one, captured
    payments = page.inner_text(".field-payment_history .readonly")
    assert re.search(r"payment \d+: captured \(current\)", payments), payments
    assert re.search(r"payment \d+: declined$", payments, re.M), payments


def test_operator_assigns_categories_with_the_multi_select(page, shot, operator, warehouse_sim):
    # given
    product = product_in_warehouse(warehouse_sim, 3, sku="BROWSER-CAT")
    CategoryFactory(name="Audio")
    CategoryFactory(name="Cables")

    # when: on the product's page, the stock is shown and "Audio" is chosen in the selector
    log_in(page, operator)
    page.goto(f"/admin/catalog/product/{product.id}/change/")
    page.select_option("#id_category_selection_from", label="Audio")
    page.click("#id_category_selection_add")
    shot("category-chosen")
    assert page.inner_text("#stock-group td.field-available").strip() == "3"
    page.click("input[name='_save']")
    page.locator(".messagelist .success").wait_for()
    shot("saved")

    # then
    assert [c.name for c in product.categories.all()] == ["Audio"]
    assert "BROWSER-CAT" in page.inner_text("#result_list")


# --- The operator's screens on a laptop, a phone and in dark mode ----------------------------

SCREENS = {
    "index": "/admin/",
    "orders": "/admin/orders/order/",
    "order": "/admin/orders/order/{order}/change/",
    "sync-runs": "/admin/inventory/warehousesyncrun/",
    "payments": "/admin/payments/payment/",
    "stock-levels": "/admin/inventory/stocklevel/",
}
# Columns an operator must see without scrolling sideways on a 1366 px laptop, sidebars open.
IN_VIEW_AT_1366 = {
    "orders": ["coloured_status", "created_at", "updated_at"],
    "sync-runs": ["status_and_trigger", "oversold_flag", "short_error"],
    "payments": ["coloured_status", "reference", "updated_at"],
    "stock-levels": ["available", "updated_at"],
}
LAPTOP, PHONE = {"width": 1366, "height": 768}, {"width": 390, "height": 844}


def rgb(css_colour: str) -> tuple[int, int, int]:
    return tuple(int(n) for n in re.findall(r"\d+", css_colour)[:3])


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    def luminance(colour):
        linear = [
            c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
            for c in (v / 255 for v in colour)
        ]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted([luminance(a), luminance(b)], reverse=True)
    return (light + 0.05) / (dark + 0.05)


def column_in_view(page, column: str) -> bool:
    """The list's header cell of that column lies inside the list's visible box and the
    window: nothing to scroll to read it."""
    return page.evaluate(
        """(column) => {
            const cell = document.querySelector(`#result_list th.column-${column}`);
            const box = document.querySelector('#changelist-form .results');
            if (!cell || !box) return false;
            const c = cell.getBoundingClientRect(), b = box.getBoundingClientRect();
            return c.left >= b.left && c.right <= b.right + 1 && c.right <= window.innerWidth;
        }""",
        column,
    )


def test_operator_screens_read_well_on_a_laptop_a_phone_and_in_dark_mode(
    browser, live_server, shot, operator, customer, payment_sim, warehouse_sim
):
    # given: a fulfilled order and a declined one, processed by the worker, and sync runs,
    # one of them stopped short with oversold SKUs and a long error
    product = product_in_warehouse(warehouse_sim, 10, sku="SCREEN-KB")
    fulfilled = place_order(customer, (product.id, 2))
    wait_for_status(fulfilled.id, "fulfilled")
    payment_sim.script("decline")
    declined = place_order(customer, (product.id, 1))
    wait_for_status(declined.id, "failed")
    WarehouseSyncRun.objects.create(trigger="beat", status="succeeded", pages=1, rows_seen=6)
    partial_sync_run(
        error="WarehouseUnavailable: GET /stock?page=13 answered 503 Service Unavailable "
        "after 3 tries; the next run resumes at its cursor"
    )
    WarehouseSyncRun.objects.update(finished_at=F("started_at") + timedelta(seconds=4.2))

    for viewport, scheme in [(LAPTOP, "light"), (PHONE, "light"), (LAPTOP, "dark")]:
        size = f"{viewport['width']}x{viewport['height']}-{scheme}"
        context = browser.new_context(
            base_url=live_server.url, viewport=viewport, color_scheme=scheme
        )
        page = context.new_page()
        page.set_default_timeout(15_000)
        log_in(page, operator)
        for name, url in SCREENS.items():
            # when: the operator opens each screen
            page.goto(url.format(order=fulfilled.id))
            shot(f"{size}-{name}", on=page)

            # then: on a phone the page itself never scrolls sideways (a list scrolls in
            # its own box, as Django's admin does)
            if viewport is PHONE:
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= PHONE["width"], f"{name} is {width} px wide on a phone"
            # and on the laptop every column that matters is in view
            if viewport is LAPTOP:
                for column in IN_VIEW_AT_1366.get(name, []):
                    assert column_in_view(page, column), f"{name}: {column} out of view"
        # and: the chart, the history to the second, and statuses readable in the theme
        page.goto("/admin/")
        assert page.locator("#orders-per-hour svg rect").count() >= 2
        assert "Orders per hour" in page.inner_text("#orders-per-hour")
        page.goto(f"/admin/orders/order/{fulfilled.id}/change/")
        assert re.search(r"\d{4}-\d\d-\d\d\s+\d\d:\d\d:\d\d", page.inner_text("#logs-group"))
        page.goto("/admin/orders/order/")
        badge = page.locator(".ops-badge", has_text="Fulfilled").first
        fg, bg = badge.evaluate(
            "e => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor]"
        )
        assert contrast(rgb(fg), rgb(bg)) >= 4.5, f"{size}: Fulfilled is {fg} on {bg}"
        context.close()
