"""What our clients of external services (payment provider, warehouse) share: a kept-alive
session, timeouts on every call, one meaning for an answer that says nothing, and the one
check that no call is made inside a database transaction."""

import os
import time

import requests
import urllib3
from django.db import transaction
from requests.adapters import HTTPAdapter


class CallInsideTransaction(RuntimeError):
    """An external call was about to be made inside a database transaction: a bug. The
    transaction would hold its row locks (and a connection) for as long as the network takes,
    and what the call did could not be undone if the transaction rolled back."""


def in_transaction(using: str | None = None) -> bool:
    """True inside an atomic block of ours; the block a test case wraps around each test (a
    transaction the code under test does not know of) does not count."""
    blocks = transaction.get_connection(using).atomic_blocks
    return any(not getattr(block, "_from_testcase", False) for block in blocks)


def client_session(base_url: str, *, pool_size: int = 32) -> requests.Session:
    """A session keeping up to `pool_size` connections to `base_url`'s host alive (one per
    worker thread), so calls do not pay a new TCP connection each.

    What requests reads from the environment on every request by default (`trust_env`) is
    read once, here: the proxy settings (HTTP_PROXY, HTTPS_PROXY, NO_PROXY) and a CA bundle
    (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE); scanning the environment and looking for a .netrc
    costs more CPU than a call to a local service. (.netrc credentials are not used: our
    services authenticate in their requests, if at all.)
    """
    session = requests.Session()
    session.proxies = requests.utils.get_environ_proxies(base_url)
    session.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class ServiceClient:
    """Base of a client of one external service at `base_url`. A call that gets no
    definitive answer (timeout, connection error, 5xx) raises the subclass's `unavailable`:
    what was asked may or may not have happened."""

    unavailable: type[Exception]

    def __init__(self, base_url: str, *, connect_timeout: float, read_timeout: float):
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        # A whole call, its answer read to the end, takes no longer than this: the read
        # timeout only bounds the wait between two bytes, and a service dripping its answer a
        # byte at a time would hold the call (and the batch waiting on it) indefinitely.
        self.deadline = connect_timeout + read_timeout
        self.session = client_session(self.base_url)

    def _send(self, method: str, path: str, **kwargs) -> requests.Response:
        """The service's answer, any status below 500, read within the call's deadline.
        Refuses to call inside a database transaction (CallInsideTransaction)."""
        if in_transaction():
            raise CallInsideTransaction(
                f"{type(self).__name__} {method} {path}: external calls are made after the "
                "transaction commits, never inside it"
            )
        deadline = time.monotonic() + self.deadline
        try:
            response = self.session.request(
                method, self.base_url + path, timeout=self.timeout, stream=True, **kwargs
            )
            _read_by(response, deadline, self.unavailable)
        except requests.RequestException as exc:
            raise self.unavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise self.unavailable(f"HTTP {response.status_code}: {response.text[:200]}")
        return response


def _read_by(response: requests.Response, deadline: float, unavailable: type[Exception]) -> None:
    """Read the answer's body, giving up (unavailable) once `deadline` has passed: each read
    returns what has arrived (one HTTP chunk, or what the socket holds), so a dripping answer
    is cut at the deadline, not a read timeout after each byte. The connection goes back to
    the pool when the body was read whole, and is closed otherwise."""
    raw = response.raw
    parts = (
        raw.read_chunked(decode_content=True)
        if raw.chunked and raw.supports_chunked_reads()
        else iter(lambda: raw.read1(65536, decode_content=True), b"")
    )
    body = []
    try:
        for part in parts:
            body.append(part)
            if time.monotonic() > deadline:
                raise unavailable(f"HTTP {response.status_code}: the answer took too long")
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raw.close()
        raise unavailable(f"{type(exc).__name__} reading the answer: {exc}") from exc
    except BaseException:
        raw.close()
        raise
    response._content = b"".join(body)
    response._content_consumed = True
    raw.release_conn()
