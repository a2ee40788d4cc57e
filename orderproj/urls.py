from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import DefaultRouter

from catalog.api import CategoryViewSet
from inventory.api import ProductWithStockViewSet
from orderproj.api.views import HealthView
from orders.api import OrderViewSet

router = DefaultRouter()
router.register("products", ProductWithStockViewSet, basename="product")
router.register("categories", CategoryViewSet, basename="category")
router.register("orders", OrderViewSet, basename="order")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/health/", HealthView.as_view(), name="health"),
    path("api/auth/token/", obtain_auth_token, name="auth-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/", include(router.urls)),
    # The original spec's path for creating an order: same view, same behaviour.
    path("orders/create", OrderViewSet.as_view({"post": "create"}), name="order-create-legacy"),
]

handler404 = "orderproj.api.errors.not_found_view"
handler500 = "orderproj.api.errors.server_error_view"
