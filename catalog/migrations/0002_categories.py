"""Categories, added without touching what exists (the original spec's migration strategy).

This migration only adds: the Categories and Product_Categories tables with their
constraints and indexes. The `Product.categories` field is state only (its through table is
ProductCategory), so the products table and the running product code are unaffected while
it is applied, and it can be reversed by dropping the two new tables.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="Category",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=255, unique=True)),
            ],
            options={"ordering": ["name"], "verbose_name_plural": "categories"},
        ),
        migrations.CreateModel(
            name="ProductCategory",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("category", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="product_links", to="catalog.category")),
                ("product", models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="category_links", to="catalog.product")),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("product", "category"), name="catalog_productcategory_unique_pair"),
                ],
            },
        ),
        migrations.AddField(
            model_name="product",
            name="categories",
            field=models.ManyToManyField(blank=True, related_name="products", through="catalog.ProductCategory", to="catalog.category"),
        ),
    ]
