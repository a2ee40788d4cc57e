"""The HTTP session our clients of external services (payment provider, warehouse) share."""

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
