import factory
from django.db import transaction

from catalog.tests.factories import ProductFactory
from inventory.models import MovementReason, StockLevel, StockMovement, WarehouseSyncRun


class StockLevelFactory(factory.django.DjangoModelFactory):
    """A stock row that existed before the test, with its ledger's opening balance."""

    class Meta:
        model = StockLevel

    product = factory.SubFactory(ProductFactory)
    on_hand = 10
    version = 1

    @classmethod
    @transaction.atomic  # with its opening: the ledger's check at commit finds it there
    def _create(cls, model_class, *args, **kwargs):
        level = super()._create(model_class, *args, **kwargs)
        StockMovement.objects.create(
            product_id=level.product_id,
            reason=MovementReason.OPENING,
            on_hand_change=level.on_hand,
            reserved_change=level.reserved,
            committed_change=level.committed,
            on_hand_after=level.on_hand,
            reserved_after=level.reserved,
            committed_after=level.committed,
        )
        return level


def product_with_stock(on_hand: int, **product_fields):
    return StockLevelFactory(product=ProductFactory(**product_fields), on_hand=on_hand).product


def product_in_warehouse(warehouse_sim, on_hand: int, **product_fields):
    """A product whose stock the warehouse and we agree on (version 1 on both sides)."""
    product = product_with_stock(on_hand, **product_fields)
    warehouse_sim.set_stock({product.sku: on_hand})
    return product


def partial_sync_run(**fields) -> WarehouseSyncRun:
    """A sync run that stopped short with everything an operator scans for: many rows,
    skipped ones of each kind, oversold SKUs, and a long error."""
    return WarehouseSyncRun.objects.create(
        **{
            "trigger": "beat",
            "status": "partial",
            "pages": 12,
            "rows_seen": 11873,
            "applied": 11750,
            "stale_skipped": 98,
            "unknown_skus": 17,
            "rejected": 8,
            "oversold": 3,
            "error": "WarehouseUnavailable: GET /stock?page=3 answered 503 Service Unavailable "
            "after 3 tries, and then the connection was reset",
            **fields,
        }
    )
