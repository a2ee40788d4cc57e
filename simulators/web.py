"""HTTP plumbing shared by the simulators: JSON answers, the error shape, input checks, and
the faults an answer can be given (a status instead of the work, a hang, a late, dripped or
malformed answer).

Every answer, including 404/405 from routing and bad JSON, is JSON in the shape
`{"error": {"code", "message", "details"?}}`, and bad input is always a 4xx, never a 500.
"""

import json
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

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


MAX_STATUS_LIST = 200


def http_error_status(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
        raise bad_request(f"{name} must be an integer from 400 to 599")
    return value


def http_error_statuses(name: str, value: Any) -> list[int]:
    """A non-empty list of 4xx/5xx statuses (repeat one to make it likelier)."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_STATUS_LIST:
        raise bad_request(f"{name} must be a list of 1 to {MAX_STATUS_LIST} statuses")
    return [http_error_status(name, status) for status in value]


def status_choice(*allowed: int) -> Validator:
    """A validator of a status that must be one of `allowed`."""

    def validate(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
            raise bad_request(f"{name} must be one of {', '.join(map(str, allowed))}")
        return value

    return validate


# Faults: how a request is answered instead of normally. Decided on its arrival, by a forced
# answer (POST /_control/fail_next) or by the seeded rates, and applied by the view in two
# steps: refuse_or_hang before the work (nothing is done), shaped after it (the work is done,
# its real answer delivered late, a byte at a time, or replaced).

ANSWER_MODES = ("hang", "drip", "malformed", "lost")
# In the order they are rolled; see roll_fault.
FAULT_RATES = ("hang_rate", "transient_rate", "lost_rate", "drip_rate", "malformed_rate")


@dataclass(frozen=True)
class Fault:
    """One request's fault: `error` answered at once, doing nothing; or a mode of ANSWER_MODES.
    `pick` seeds the choices a mode makes (which malformed body), so that they replay too."""

    error: ApiError | None = None
    mode: str | None = None
    pick: int = 0


def status_error(status: int, what: str) -> ApiError:
    """A forced or transient status, in the JSON error shape."""
    code = "service_unavailable" if status >= 500 else "forced_error"
    return ApiError(status, code, f"simulated {status} answer to {what}")


def parse_forced_answer(data: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """The (status, mode) a fail_next asks for: exactly one of "status" (400-599, answered
    doing nothing) or "mode" (one of ANSWER_MODES)."""
    if ("status" in data) == ("mode" in data):
        raise bad_request("give exactly one of status and mode")
    if "status" in data:
        return http_error_status("status", data["status"]), None
    mode = data["mode"]
    if not isinstance(mode, str) or mode not in ANSWER_MODES:
        raise bad_request(f"mode must be one of {', '.join(ANSWER_MODES)}")
    return None, mode


def forced_fault(status: int | None, mode: str | None, rng: random.Random, what: str) -> Fault:
    """The fault of a stored forced answer (exactly one of status and mode)."""
    if status is not None:
        return Fault(error=status_error(status, what))
    return Fault(mode=mode, pick=rng.getrandbits(32))


def roll_fault(rng: random.Random, config: Mapping[str, Any], what: str) -> Fault | None:
    """The seeded rates' fault for one request, or None: a draw per rate, in the order of
    FAULT_RATES (hang, transient, lost, drip, malformed), the first below its rate winning.
    The ones that do nothing come first, then the ones that do the work and spoil the answer.
    Every rate is drawn every time, so a request's draws do not depend on the rates. A
    transient fault answers one of transient_statuses (the seed's pick). A simulator without
    a rate in its config never rolls that fault."""
    draws = [rng.random() for _ in FAULT_RATES]
    pick = rng.getrandbits(32)
    for name, drawn in zip(FAULT_RATES, draws, strict=True):
        if drawn >= config.get(name, 0.0):
            continue
        if name == "transient_rate":
            statuses = config["transient_statuses"]
            return Fault(error=status_error(statuses[pick % len(statuses)], what))
        return Fault(mode=name.removesuffix("_rate"), pick=pick)
    return None


def hang(hang_ms: int) -> NoReturn:
    """Hold the connection, answering nothing, for hang_ms; then give up with a 503 (the client
    timed out long before: to it the request was never answered)."""
    time.sleep(hang_ms / 1000)
    raise ApiError(503, "service_unavailable", "simulated hang: the request was never answered")


def refuse_or_hang(fault: Fault | None, config: Mapping[str, Any]) -> None:
    """Before the work: raise the fault's error, or hang; either way nothing is done."""
    if fault is None:
        return
    if fault.error is not None:
        raise fault.error
    if fault.mode == "hang":
        hang(config["hang_ms"])


def answered(produce: Callable[[], Response]) -> Response:
    """The answer `produce` makes, an ApiError it raises as the error answer: the real answer,
    success or refusal, that a fault then delivers."""
    try:
        return produce()
    except ApiError as error:
        return error_response(error)


def dripped(response: Response, interval_ms: int) -> Response:
    """The answer with its status line and headers (Content-Length included) sent at once and
    its body one byte every interval_ms: a client whose read timeout is longer than the
    interval never times out, however long the whole answer takes.

    A generator body is streamed by werkzeug's server and gunicorn alike, each item written and
    flushed as it is yielded; the first, empty, item makes them send the headers.
    """
    body = response.get_data()

    def trickle() -> Iterator[bytes]:
        yield b""
        for index in range(len(body)):
            time.sleep(interval_ms / 1000)
            yield body[index : index + 1]

    return Response(trickle(), response.status_code, headers=response.headers)


def malformed_body(real: bytes, rng: random.Random) -> bytes:
    """A body the client cannot use, the seed's pick: not JSON, a list, an object without the
    fields, or the real answer cut in half (truncated JSON, `{"id":"ch_...`)."""
    variants = [b"<html>oops", b"[]", b'{"unexpected": true}', real[: len(real) // 2]]
    return rng.choice(variants)


def shaped(
    response: Response,
    fault: Fault | None,
    config: Mapping[str, Any],
    malformed: Callable[[bytes, random.Random], bytes] = malformed_body,
) -> Response:
    """After the work: the real answer as the fault delivers it, late (lost: after
    timeout_delay_ms), a byte every drip_interval_ms (drip), or replaced by a 200 whose body
    `malformed` makes from it (malformed)."""
    if fault is None or fault.mode is None:
        return response
    if fault.mode == "lost":
        time.sleep(config["timeout_delay_ms"] / 1000)
        return response
    if fault.mode == "drip":
        return dripped(response, config["drip_interval_ms"])
    if fault.mode == "malformed":
        body = malformed(response.get_data(), random.Random(fault.pick))
        return Response(body, 200, mimetype="application/json")
    return response
