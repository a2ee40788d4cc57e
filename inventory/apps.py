from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "inventory"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from inventory.api import stock_as_shown
        from webhooks.rendering import register_renderer

        # A stock event's body carries the product's stock as the staff API shows it.
        register_renderer("stock", key="stock", render=stock_as_shown)
