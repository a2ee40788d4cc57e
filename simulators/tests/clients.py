"""What a client observes of an answer sent slowly: when its headers came, and its body byte
by byte."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

# The read timeout of the clients in these tests: a socket read waiting longer fails.
READ_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class SlowRead:
    response: requests.Response
    body: bytes
    headers_after_s: float  # from the request to its status line and headers
    total_s: float  # from the request to the body's last byte
    longest_gap_s: float  # the longest wait for a byte (the headers count as the first)


def read_byte_by_byte(
    send: Callable[..., requests.Response], *args: Any, **kwargs: Any
) -> SlowRead:
    """Send with `send(*args, **kwargs, stream=True, timeout=(5, READ_TIMEOUT_S))` and read the
    answer's body one byte at a time, each read under the read timeout."""
    started = time.monotonic()
    response = send(*args, **kwargs, stream=True, timeout=(5, READ_TIMEOUT_S))
    headers_at = last = time.monotonic()
    body, longest = b"", headers_at - started
    with response:
        while byte := response.raw.read(1):
            now = time.monotonic()
            body, longest, last = body + byte, max(longest, now - last), now
    return SlowRead(response, body, headers_at - started, last - started, longest)
