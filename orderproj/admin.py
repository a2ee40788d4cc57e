"""The operators' admin site: its own name, and the apps in the order of an operator's day
(orders first, the plumbing last) instead of alphabetical. settings.INSTALLED_APPS names
OperationsAdminConfig in place of django.contrib.admin, so `admin.site` is this site."""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig

# Apps not listed come after these and before the plumbing (tokens, users, beat).
APP_ORDER = ["orders", "inventory", "catalog", "payments", "webhooks"]
PLUMBING_ORDER = ["authtoken", "auth", "django_celery_beat"]
# Within an app, the screen an operator opens most comes first; the rest stay alphabetical.
MODEL_ORDER = {
    "orders": ["Order"],
    "inventory": ["StockLevel", "StockMovement"],
    "catalog": ["Product"],
    "webhooks": ["Delivery", "Subscription"],
}


def _app_rank(app_label: str) -> tuple[int, int]:
    if app_label in APP_ORDER:
        return (0, APP_ORDER.index(app_label))
    if app_label in PLUMBING_ORDER:
        return (2, PLUMBING_ORDER.index(app_label))
    return (1, 0)


class OperationsAdminSite(admin.AdminSite):
    site_header = "Order processing · operations"
    site_title = "Order operations"
    index_title = "Operations overview"

    def get_app_list(self, request, app_label=None):
        app_list = super().get_app_list(request, app_label)  # alphabetical, apps and models
        app_list.sort(key=lambda app: _app_rank(app["app_label"]))  # stable: ties keep it
        for app in app_list:
            first = MODEL_ORDER.get(app["app_label"], [])
            app["models"].sort(
                key=lambda m: first.index(m["object_name"]) if m["object_name"] in first else 99
            )
        return app_list


class OperationsAdminConfig(AdminConfig):
    default_site = "orderproj.admin.OperationsAdminSite"
