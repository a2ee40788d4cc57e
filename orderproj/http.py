"""The HTTP session our clients of external services (payment provider, warehouse) share."""

import requests
from requests.adapters import HTTPAdapter


def client_session(base_url: str, *, pool_size: int = 32) -> requests.Session:
    """A session keeping up to `pool_size` connections to `base_url`'s host alive (one per
    worker thread), so calls do not pay a new TCP connection each.

    Proxy settings (HTTP_PROXY, HTTPS_PROXY, NO_PROXY) are read from the environment once,
    here, instead of on every request as requests does by default (`trust_env`): scanning the
    environment and looking for a .netrc costs more CPU than a call to a local service.
    """
    session = requests.Session()
    session.proxies = requests.utils.get_environ_proxies(base_url)
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
