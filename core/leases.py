"""Named database leases: single flight across every process of the deployment.

Acquire and renew are conditional UPDATEs, so two contenders can never both win; a holder
that dies stops renewing and its lease expires.
"""

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from core.models import Lease


def lease_acquire(*, name: str, holder: str, seconds: int) -> bool:
    """Take the lease if it is free or expired. Autocommit: visible to others at once."""
    Lease.objects.get_or_create(name=name)
    now = timezone.now()
    taken = (
        Lease.objects.filter(name=name)
        .filter(Q(holder="") | Q(expires_at__lt=now))
        .update(holder=holder, expires_at=now + timedelta(seconds=seconds))
    )
    return taken == 1


def lease_renew(*, name: str, holder: str, seconds: int) -> bool:
    """Extend the lease; False when it was lost (expired and taken by someone else)."""
    return (
        Lease.objects.filter(name=name, holder=holder).update(
            expires_at=timezone.now() + timedelta(seconds=seconds)
        )
        == 1
    )


def lease_release(*, name: str, holder: str) -> None:
    Lease.objects.filter(name=name, holder=holder).update(holder="", expires_at=None)


def lease_holder(*, name: str) -> str:
    return Lease.objects.filter(name=name).values_list("holder", flat=True).first() or ""
