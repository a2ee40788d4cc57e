"""Catalog writes. Each service runs in one transaction and is the only place that changes
catalog rows; a unique-SKU race lost at the database surfaces as `DuplicateSku`, not a 500."""

from collections.abc import Iterable
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from catalog.models import Category, Product
from core.errors import Conflict, DomainError


class DuplicateSku(DomainError):
    code = "validation_error"
    status_code = 400
    default_message = "Invalid input."

    def __init__(self, sku: str):
        super().__init__(details={"sku": [f"A product with SKU {sku!r} already exists."]})


class DuplicateCategory(DomainError):
    code = "validation_error"
    status_code = 400
    default_message = "Invalid input."

    def __init__(self, name: str):
        super().__init__(details={"name": [f"A category named {name!r} already exists."]})


@transaction.atomic
def product_create(
    *,
    sku: str,
    name: str,
    price: Decimal,
    description: str = "",
    is_active: bool = True,
    categories: Iterable[Category] | None = None,
) -> Product:
    """Create a product and its category links atomically. Not idempotent: SKU is unique."""
    try:
        with transaction.atomic():
            product = Product.objects.create(
                sku=sku, name=name, price=price, description=description, is_active=is_active
            )
    except IntegrityError as exc:
        if Product.objects.filter(sku=sku).exists():
            raise DuplicateSku(sku) from exc
        raise
    if categories:
        product.categories.set(categories)
    return product


@transaction.atomic
def product_update(
    *, product: Product, categories: Iterable[Category] | None = None, **fields
) -> Product:
    """Update the given fields (and, when given, replace the category links). Safe to repeat."""
    for name, value in fields.items():
        setattr(product, name, value)
    if fields:
        try:
            with transaction.atomic():
                product.save(update_fields=[*fields, "updated_at"])
        except IntegrityError as exc:
            if (
                "sku" in fields
                and Product.objects.filter(sku=fields["sku"]).exclude(pk=product.pk).exists()
            ):
                raise DuplicateSku(fields["sku"]) from exc
            raise
    if categories is not None:
        product.categories.set(categories)
    return product


@transaction.atomic
def category_create(*, name: str) -> Category:
    try:
        with transaction.atomic():
            return Category.objects.create(name=name)
    except IntegrityError as exc:
        raise DuplicateCategory(name) from exc


class ProductInUse(Conflict):
    code = "product_in_use"
    default_message = "The product is referenced by orders; deactivate it instead of deleting it."


@transaction.atomic
def product_delete(*, product: Product) -> None:
    """Delete a product and its category links; refused while any order references it."""
    try:
        product.delete()
    except ProtectedError as exc:
        raise ProductInUse() from exc
