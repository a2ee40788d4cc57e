from django.db.models import QuerySet

from catalog.models import Category, Product


def product_list(*, include_inactive: bool = True) -> QuerySet[Product]:
    products = Product.objects.prefetch_related("categories")
    return products if include_inactive else products.filter(is_active=True)


def category_list() -> QuerySet[Category]:
    return Category.objects.all()
