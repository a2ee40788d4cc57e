from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.utils.html import format_html

from catalog.models import Category, Product


class CategorySelector(FilteredSelectMultiple):
    """The admin's two-box selector. Its script builds the boxes at the start of the select's
    parent element; a model's many-to-many field gets a wrapper for that, this form field
    needs its own, or the boxes land before the field's label."""

    def render(self, name, value, attrs=None, renderer=None):
        return format_html("<div>{}</div>", super().render(name, value, attrs, renderer))


class ProductAdminForm(forms.ModelForm):
    # The admin cannot edit an M2M with an explicit through model directly (admin.E013), so
    # the form carries the selection and ProductAdmin.save_related writes the links.
    category_selection = forms.ModelMultipleChoiceField(
        label="Categories",
        queryset=Category.objects.all(),
        required=False,
        widget=CategorySelector("categories", is_stacked=False),
    )

    class Meta:
        model = Product
        fields = ["sku", "name", "description", "price", "is_active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["category_selection"].initial = self.instance.categories.all()


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductAdminForm
    list_display = ["sku", "name", "price", "is_active", "category_names", "updated_at"]
    list_filter = ["is_active", "categories"]
    search_fields = ["sku", "name"]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("categories")

    @admin.display(description="Categories")
    def category_names(self, product: Product) -> str:
        return ", ".join(c.name for c in product.categories.all())

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        form.instance.categories.set(form.cleaned_data["category_selection"])


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "id"]
    search_fields = ["name"]
