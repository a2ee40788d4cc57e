import logging

from django.conf import settings
from rest_framework.throttling import UserRateThrottle

logger = logging.getLogger(__name__)


class SettingRateThrottle(UserRateThrottle):
    """Per user, with its rate read from a setting when each request arrives (throttles are
    built per request), so changing the setting needs no restart; an empty rate is no
    throttle. The counters live in the default cache, shared by processes when it is Redis."""

    rate_setting: str

    def get_rate(self) -> str | None:
        return getattr(settings, self.rate_setting, "") or None

    def allow_request(self, request, view) -> bool:
        # Fail open: a cache outage must not stop order taking; it only lifts the limit.
        try:
            return super().allow_request(request, view)
        except Exception as exc:
            logger.warning("throttle %s not applied, cache unavailable: %s", self.scope, exc)
            return True


class OrderCreateThrottle(SettingRateThrottle):
    scope = "order_create"
    rate_setting = "ORDER_CREATE_THROTTLE_RATE"
