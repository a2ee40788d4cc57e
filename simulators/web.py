"""HTTP plumbing shared by the simulators: JSON answers, the error shape, input checks.

Every answer, including 404/405 from routing and bad JSON, is JSON in the shape
`{"error": {"code", "message", "details"?}}`, and bad input is always a 4xx, never a 500.
"""

import json
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

# Counts, quantities and milliseconds fit SQLite's integers and time.sleep with room to spare.
MAX_INT = 2**31 - 1


class ApiError(Exception):
    """An error answer with a stable code, raised anywhere in a request."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def bad_request(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def json_response(body: Any, status: int = 200) -> Response:
    # json.dumps directly: Flask's provider sorts keys, which costs time on big stock pages.
    return Response(json.dumps(body, separators=(",", ":")), status, mimetype="application/json")


def error_response(error: ApiError) -> Response:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.details:
        body["details"] = error.details
    return json_response({"error": body}, error.status)


def register_error_handlers(app: Flask) -> None:
    """Map ApiError and werkzeug's HTTP errors (404, 405, ...) to the JSON error shape."""

    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException) -> Response:
        code = error.name.lower().replace(" ", "_")  # "Not Found" -> "not_found"
        response = error_response(ApiError(error.code or 500, code, error.description or ""))
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response


def json_body() -> dict[str, Any]:
    """The request body as a JSON object, or a 400."""
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    return data


def reject_unknown_fields(data: Mapping[str, Any], allowed: set[str] | Mapping[str, Any]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise bad_request(f"unknown fields: {', '.join(unknown)}")


def require_str(data: Mapping[str, Any], name: str, *, max_length: int = 128) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        raise bad_request(f"{name} must be a string of 1 to {max_length} characters")
    return value


def path_key(value: str, name: str) -> str:
    """A value that is also addressed in a URL path (charge key, order id)."""
    if "/" in value:
        raise bad_request(f"{name} must not contain '/'")
    return value


def rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise bad_request(f"{name} must be a number between 0 and 1")
    return float(value)


def non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise bad_request(f"{name} must be an integer from 0 to {MAX_INT}")
    return value


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false")
    return value


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INT:
        raise bad_request(f"{name} must be an integer from 1 to {MAX_INT}")
    return value


def non_negative_number(name: str, value: Any) -> float:
    valid = isinstance(value, int | float) and not isinstance(value, bool)
    if not valid or not math.isfinite(value) or value < 0:
        raise bad_request(f"{name} must be a finite number >= 0")
    return value


Validator = Callable[[str, Any], Any]


def validate_config(data: Mapping[str, Any], fields: Mapping[str, Validator]) -> dict[str, Any]:
    """Check a (partial) behaviour config: known fields only, each with its validator."""
    reject_unknown_fields(data, fields)
    return {name: fields[name](name, value) for name, value in data.items()}


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def simulate_latency(latency_ms: int) -> None:
    """The configured network/processing delay of the simulated system."""
    if latency_ms > 0:
        time.sleep(latency_ms / 1000)
