from django.conf import settings
from django.shortcuts import render
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.routers import APIRootView
from rest_framework.views import APIView

from core.api.errors import error_body
from core.api.parsers import JSONParser
from orderproj.health import health_report


class HealthView(APIView):
    """200 when the database and the broker answer, a worker answers a ping and beat ticked
    recently; 503 naming what does not (orderproj/health.py)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        responses={
            200: inline_serializer(
                "Health", {"status": serializers.CharField(), "checks": serializers.DictField()}
            ),
            503: inline_serializer(
                "HealthUnavailable",
                {
                    "status": serializers.CharField(),
                    "checks": serializers.DictField(),
                    "error": serializers.DictField(),
                },
            ),
        }
    )
    def get(self, request):
        healthy, checks, down = health_report()
        if healthy:
            return Response({"status": "ok", "checks": checks})
        down = sorted(down)
        body = {"status": "unavailable", "checks": checks}
        body.update(
            error_body(
                "service_unavailable", f"Unreachable: {', '.join(down)}.", {"unreachable": down}
            )
        )
        return Response(body, status=503)


class TokenView(ObtainAuthToken):
    """Exchange a username and password for the API token (`Authorization: Token <token>`)."""

    permission_classes = [AllowAny]
    parser_classes = [FormParser, MultiPartParser, JSONParser]  # ours: a nesting limit

    @extend_schema(
        operation_id="auth_token_create",
        responses={200: inline_serializer("Token", {"token": serializers.CharField()})},
        tags=["auth"],
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


def landing(request):
    """`/`: where everything is, and in the embedded demo its logins."""
    return render(request, "core/landing.html", {"demo": settings.EMBEDDED})


class ApiRootView(APIRootView):
    """`/api/`: the API's endpoints as links, for anyone (what each allows is told by the
    endpoint itself); the token exchange, the docs, the schema and health among them."""

    permission_classes = [AllowAny]

    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        for name in ("auth-token", "docs", "schema", "health"):
            response.data[name] = reverse(name, request=request)
        return response
