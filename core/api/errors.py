"""One JSON error shape for every 4xx and 5xx answer of the API:

{"error": {"code": "...", "message": "...", "details": {...}}}
"""

import logging
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core.errors import DomainError

logger = logging.getLogger(__name__)

# DRF's default codes are fine as they are, except these, which we name for clients.
_CODE_OVERRIDES = {
    exceptions.ValidationError: "validation_error",
    exceptions.ParseError: "malformed_request",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.Throttled: "throttled",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _api_exception_body(exc: exceptions.APIException) -> dict[str, Any]:
    code = _CODE_OVERRIDES.get(type(exc)) or cast(str, getattr(exc, "default_code", "error"))
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, list):
            detail = {"non_field_errors": detail}
        return error_body(code, "Invalid input.", detail)
    message = str(exc.detail) if not isinstance(exc.detail, (list, dict)) else str(exc)
    details: dict[str, Any] = {}
    # (The stubs leave out Throttled.wait, which its __init__ sets.)
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:  # type: ignore[attr-defined]
        details["retry_after_seconds"] = int(exc.wait)  # type: ignore[attr-defined]
    return error_body(code, message, details)


def _user_deleted(context: dict[str, Any]) -> bool:
    user = getattr(context.get("request"), "user", None)
    if user is None or not user.is_authenticated:
        return False
    return not get_user_model().objects.filter(pk=user.pk).exists()


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF EXCEPTION_HANDLER: maps every exception to the error shape; never lets one escape."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, SuspiciousOperation):
        # e.g. too many form fields or a body over DATA_UPLOAD_MAX_MEMORY_SIZE: the client's
        # fault, answered like Django answers it outside DRF, with a 400.
        logger.warning("suspicious request: %s", exc)
        exc = exceptions.ParseError("The request was refused as malformed or too large.")

    if isinstance(exc, DomainError):
        set_rollback()
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)

    if isinstance(exc, exceptions.APIException):
        headers = {}
        if auth_header := getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = auth_header
        if wait := getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(wait))
        set_rollback()
        return Response(_api_exception_body(exc), status=exc.status_code, headers=headers)

    if isinstance(exc, IntegrityError) and _user_deleted(context):
        # A user deleted while a web process still knew their token (TOKEN_CACHE_SECONDS):
        # what they wrote names no user. They are no longer anyone: 401, as with no token.
        set_rollback()
        body = error_body("authentication_failed", "Invalid token.")
        return Response(body, status=401, headers={"WWW-Authenticate": "Token"})

    view = context.get("view")
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is unreachable, restarting or shedding load: not a bug, and worth
        # retrying; no change was committed (each write is one transaction).
        logger.error("database unavailable in %s: %s", type(view).__name__ if view else "API", exc)
        set_rollback()
        return Response(
            error_body(
                "service_unavailable", "The database is unavailable; try again in a moment."
            ),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    logger.exception("unhandled error in %s", type(view).__name__ if view else "API view")
    set_rollback()
    return Response(
        error_body("server_error", "An unexpected error occurred; it has been logged."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


# Written like DRF's JSONRenderer writes the API's own answers (no spaces).
COMPACT = {"json_dumps_params": {"separators": (",", ":")}}


def _is_api(request) -> bool:
    return request.path.startswith(("/api/", "/orders/"))


def not_found_view(request, exception=None):
    """handler404: JSON under the API's paths, Django's page elsewhere."""
    if _is_api(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404, **COMPACT)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def bad_request_view(request, exception=None):
    """handler400 (e.g. a Host header not in ALLOWED_HOSTS): JSON under the API's paths."""
    if _is_api(request):
        return JsonResponse(error_body("bad_request", "Bad request."), status=400, **COMPACT)
    from django.views.defaults import bad_request

    return bad_request(request, exception)


def permission_denied_view(request, exception=None):
    """handler403 (Django's own refusals, outside DRF): JSON under the API's paths."""
    if _is_api(request):
        return JsonResponse(
            error_body("permission_denied", "You do not have permission to perform this action."),
            status=403,
            **COMPACT,
        )
    from django.views.defaults import permission_denied

    return permission_denied(request, exception)


def server_error_view(request):
    """handler500: JSON under the API's paths, Django's page elsewhere."""
    if _is_api(request):
        return JsonResponse(
            error_body("server_error", "An unexpected error occurred; it has been logged."),
            status=500,
            **COMPACT,
        )
    from django.views.defaults import server_error

    return server_error(request)
