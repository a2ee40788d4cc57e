from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from orderproj.api.errors import error_body
from orderproj.health import health_report


class HealthView(APIView):
    """200 when the database and the broker answer; 503 naming what does not."""

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
        healthy, checks = health_report()
        if healthy:
            return Response({"status": "ok", "checks": checks})
        down = sorted(name for name, check in checks.items() if not check["ok"])
        body = {"status": "unavailable", "checks": checks}
        body.update(
            error_body(
                "service_unavailable", f"Unreachable: {', '.join(down)}.", {"unreachable": down}
            )
        )
        return Response(body, status=503)
