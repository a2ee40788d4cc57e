"""What our clients of external services (payment provider, warehouse) share: a kept-alive
session, timeouts on every call, and one meaning for an answer that says nothing."""

import os

import requests
from requests.adapters import HTTPAdapter


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
        self.session = client_session(self.base_url)

    def _send(self, method: str, path: str, **kwargs) -> requests.Response:
        """The service's answer, any status below 500."""
        try:
            response = self.session.request(
                method, self.base_url + path, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise self.unavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise self.unavailable(f"HTTP {response.status_code}: {response.text[:200]}")
        return response
