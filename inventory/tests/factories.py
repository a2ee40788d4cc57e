import factory

from catalog.tests.factories import ProductFactory
from inventory.models import StockLevel


class StockLevelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StockLevel

    product = factory.SubFactory(ProductFactory)
    on_hand = 10
    version = 1


def product_with_stock(on_hand: int, **product_fields):
    return StockLevelFactory(product=ProductFactory(**product_fields), on_hand=on_hand).product


def product_in_warehouse(warehouse_sim, on_hand: int, **product_fields):
    """A product whose stock the warehouse and we agree on (version 1 on both sides)."""
    product = product_with_stock(on_hand, **product_fields)
    warehouse_sim.set_stock({product.sku: on_hand})
    return product
