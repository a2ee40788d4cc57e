"""Named database leases: single flight across every process of the deployment.

Acquire and renew are conditional UPDATEs, so two contenders can never both win; a holder
that dies stops renewing and its lease expires. Expiry is on the database's clock
(core/clock.py): a holder on a machine whose clock is off holds its lease as long as any.
"""

from django.db.models import Q
from django.db.models.functions import Now

from core.clock import now_expression
from core.models import Lease


def lease_acquire(*, name: str, holder: str, seconds: int) -> bool:
    """Take the lease if it is free or expired. Autocommit: visible to others at once."""
    Lease.objects.get_or_create(name=name)
    taken = (
        Lease.objects.filter(name=name)
        .filter(Q(holder="") | Q(expires_at__lt=Now()))
        .update(holder=holder, expires_at=now_expression(plus=seconds))
    )
    return taken == 1


def lease_renew(*, name: str, holder: str, seconds: int) -> bool:
    """Extend the lease; False when it was lost (expired and taken by someone else)."""
    return (
        Lease.objects.filter(name=name, holder=holder).update(
            expires_at=now_expression(plus=seconds)
        )
        == 1
    )


def lease_release(*, name: str, holder: str) -> None:
    Lease.objects.filter(name=name, holder=holder).update(holder="", expires_at=None)


def lease_holder(*, name: str) -> str:
    return Lease.objects.filter(name=name).values_list("holder", flat=True).first() or ""
