"""Token authentication without a database round trip for every request."""

import copy
import threading
import time

from django.conf import settings
from rest_framework.authentication import TokenAuthentication

MAX_ENTRIES = 10_000


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's `Authorization: Token <key>`, with each process remembering for
    TOKEN_CACHE_SECONDS which user a valid key belongs to: a client sending many requests
    costs one token lookup per process per interval instead of one per request. The price: a
    token deleted, or a user deactivated, is still accepted by a process that had already
    seen it, for at most that long. Keys that fail are never remembered. 0 turns it off."""

    _known: dict[str, tuple[float, object, object]] = {}
    _lock = threading.Lock()

    def authenticate_credentials(self, key):
        ttl = settings.TOKEN_CACHE_SECONDS
        if ttl <= 0:
            return super().authenticate_credentials(key)
        now = time.monotonic()
        known = self._known.get(key)
        if known is not None and known[0] > now:
            _, user, token = known
            return copy.copy(user), token  # a request may change its own user object
        user, token = super().authenticate_credentials(key)  # raises for a bad key
        with self._lock:
            if len(self._known) >= MAX_ENTRIES:
                self._known.clear()
            self._known[key] = (now + ttl, copy.copy(user), token)
        return user, token

    @classmethod
    def forget(cls) -> None:
        """Remember no key (tests; any process may call it)."""
        with cls._lock:
            cls._known.clear()
