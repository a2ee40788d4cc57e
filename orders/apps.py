from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from orders.api import orders_as_shown
        from webhooks.rendering import register_renderer

        # An order event's body carries the order as the API shows it (docs/webhooks.md).
        register_renderer("order", key="order", render=orders_as_shown)
