import django_filters
from django.db.models import Q

from catalog.models import Category, Product
from core.api.filters import Int64ModelMultipleChoiceFilter, StrictBooleanFilter


class ProductFilter(django_filters.FilterSet):
    category = Int64ModelMultipleChoiceFilter(
        field_name="categories",
        queryset=Category.objects.all(),
        distinct=True,
        help_text="Category id; repeat to match any of several.",
    )
    is_active = StrictBooleanFilter()
    search = django_filters.CharFilter(method="filter_search", help_text="SKU or name contains.")

    class Meta:
        model = Product
        fields = ["category", "is_active", "search"]

    def filter_search(self, queryset, name, value):
        return queryset.filter(Q(sku__icontains=value) | Q(name__icontains=value))
