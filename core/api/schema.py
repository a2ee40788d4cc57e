"""OpenAPI generation (drf-spectacular): every operation documents the error answers it can
give, in the one error shape, so clients and the schema fuzzer know them all."""

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS, IsAdminUser

from core.api.permissions import IsStaffOrReadOnly

DESCRIPTION = """\
Orders are taken over REST and processed asynchronously: stock is reserved, the payment
service is charged, and the order is confirmed (or fails, with a reason) a moment later.

**Authentication.** `Authorization: Token <key>`; `POST /api/auth/token/` exchanges a username
and password for the key. Browsers may use the admin's session instead (with the CSRF token on
writes). Without credentials the protected endpoints answer 401.

**Errors.** Every 4xx and 5xx answer has one shape:
`{"error": {"code": "...", "message": "...", "details": {...}}}`. `code` is stable and meant
for programs (`validation_error`, `not_authenticated`, `permission_denied`, `not_found`,
`method_not_allowed`, `unsupported_media_type`, `throttled`, `idempotency_key_in_use`, ...);
validation errors put per-field messages in `details`.

**Idempotency.** `POST /api/orders/` takes an optional `Idempotency-Key` header, per user and
kept 24 hours: the same key with the same body replays the first accepted answer (status, body
and `Location`, with `Idempotent-Replayed: true`); with another body it answers 422; while the
first request is still being processed, 409. Only accepted (2xx) answers are kept: a refused
request created nothing, so the key stays free and may be sent again.
"""


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable, e.g. `validation_error`.")
    message = serializers.CharField(help_text="For humans.")
    details = serializers.DictField(
        help_text="What a caller can act on; for validation errors the messages per field."
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorSerializer, description=description)


ERRORS = {
    400: "Invalid input (`validation_error`, messages per field in `details`) or a malformed "
    "body (`malformed_request`).",
    401: "No or invalid credentials (`not_authenticated`, `authentication_failed`).",
    403: "Not allowed for this user (`permission_denied`), e.g. staff only, or a session "
    "without its CSRF token.",
    404: "No such resource, or one of another customer's (`not_found`).",
    415: "The body's media type is not accepted, e.g. not JSON (`unsupported_media_type`).",
    503: "The database is unavailable (`service_unavailable`); retry after `Retry-After`.",
}


class AutoSchema(openapi.AutoSchema):
    """Adds the error answers that follow from how a view is built (authentication,
    permissions, filters, path parameters, body) to what each view declares itself."""

    def get_auth(self):
        auths = super().get_auth()
        reads_for_anyone = self.method.upper() in SAFE_METHODS and any(
            isinstance(p, IsStaffOrReadOnly) for p in self.view.get_permissions()
        )
        if reads_for_anyone and {} not in auths:
            auths.append({})
        return auths

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for status in self._error_statuses():
            if str(status) not in responses:
                responses[str(status)] = self._get_response_for_code(
                    error_response(ERRORS[status]), str(status), direction=direction
                )
        return dict(sorted(responses.items()))

    def _error_statuses(self) -> set[int]:
        view, method = self.view, self.method.upper()
        statuses = set()
        has_body = method in ("POST", "PUT", "PATCH") and self.get_request_serializer()
        paginated = getattr(view, "paginator", None) is not None
        a_list = method == "GET" and self._is_list_view()
        # a list's query parameters (filters, ordering, page_size) are checked too
        if has_body or getattr(view, "filterset_class", None) or (a_list and paginated):
            statuses.add(400)
        if has_body:
            statuses.add(415)
        authentication = view.get_authenticators()
        if authentication:
            statuses.add(401)  # an invalid token is refused even where anonymous may read
        permissions = view.get_permissions()
        session = any(isinstance(a, SessionAuthentication) for a in authentication)
        if any(isinstance(p, IsAdminUser) for p in permissions) or (
            method not in SAFE_METHODS and (session or authentication)
        ):
            statuses.add(403)
        statuses.add(503)  # every operation reads the database (health has its own 503)
        if "{" in self.path or (a_list and paginated):
            statuses.add(404)  # also a page number past the end
        return statuses


def describe_api(result, generator, request, public):
    """drf-spectacular postprocessing hook: the API's long description, and the original
    spec's path for creating an order told apart from the API's own."""
    result["info"]["description"] = DESCRIPTION
    legacy = result["paths"].get("/orders/create", {}).get("post")
    if legacy:
        legacy["operationId"] = "orders_create_legacy"
        legacy["description"] = (
            "The original spec's path for creating an order: the same as `POST /api/orders/`."
        )
    return result
