from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from catalog.api import CategoryViewSet
from inventory.api import ProductWithStockViewSet, StockLevelViewSet, StockMovementViewSet
from orderproj.metrics import metrics_view
from orderproj.views import ApiRootView, HealthView, TokenView, landing
from orders.api import OrderViewSet
from webhooks.api import SubscriptionViewSet

router = DefaultRouter()
router.APIRootView = ApiRootView
router.register("products", ProductWithStockViewSet, basename="product")
router.register("categories", CategoryViewSet, basename="category")
router.register("orders", OrderViewSet, basename="order")
router.register("stock", StockLevelViewSet, basename="stock")
router.register("webhooks", SubscriptionViewSet, basename="webhook")
router.register(
    r"stock/(?P<product_id>[^/.]+)/movements", StockMovementViewSet, basename="stock-movement"
)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/health/", HealthView.as_view(), name="health"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus
    path("api/auth/token/", TokenView.as_view(), name="auth-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/", include(router.urls)),
    # The original spec's path for creating an order: same view, same behaviour; with a
    # trailing slash too, as the API's own paths are spelled.
    path("orders/create", OrderViewSet.as_view({"post": "create"}), name="order-create-legacy"),
    path("orders/create/", OrderViewSet.as_view({"post": "create"}, schema=None)),
    path("", landing, name="landing"),
]

handler400 = "core.api.errors.bad_request_view"
handler403 = "core.api.errors.permission_denied_view"
handler404 = "core.api.errors.not_found_view"
handler500 = "core.api.errors.server_error_view"
