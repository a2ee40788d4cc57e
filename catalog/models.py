from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q


class Product(models.Model):
    sku = models.CharField("SKU", max_length=64, unique=True)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, validators=[MinValueValidator(0)])
    is_active = models.BooleanField("active", default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The original spec's Product_Categories join table. Declared here so `product.categories`
    # reads naturally; adding it changed no column of this table (see 0002_categories).
    categories: "models.ManyToManyField[Category, ProductCategory]" = models.ManyToManyField(
        "Category", through="ProductCategory", related_name="products", blank=True
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(price__gte=0), name="catalog_product_price_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sku} · {self.name}"


class Category(models.Model):
    """The original spec's Categories table."""

    name = models.CharField(max_length=255, unique=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class ProductCategory(models.Model):
    """The original spec's Product_Categories: one row per (product, category) pair.

    A link goes away with either side (CASCADE).
    """

    # No index of its own: the unique (product, category) index serves lookups by product.
    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="category_links", db_index=False
    )
    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="product_links")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["product", "category"], name="catalog_productcategory_unique_pair"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product_id} in {self.category_id}"
