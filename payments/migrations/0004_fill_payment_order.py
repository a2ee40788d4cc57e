"""Each payment's order from its reference (in a migration of its own: on PostgreSQL a table
with pending trigger events from these updates cannot be altered in the same transaction),
and the columns of existing rows: when a charge was last requested, which payments their
order no longer wants."""

import uuid

from django.db import migrations
from django.db.models import F
from django.utils import timezone


def belong_to_orders(apps, schema_editor):
    Payment = apps.get_model("payments", "Payment")
    Order = apps.get_model("orders", "Order")
    now = timezone.now()
    owners = {}
    for pk, reference in list(Payment.objects.values_list("pk", "reference")):
        try:
            owners[pk] = uuid.UUID(reference.removeprefix("order:"))
        except ValueError:
            owners[pk] = None
    known = set(Order.objects.values_list("uid", flat=True))
    orphans = sorted(pk for pk, uid in owners.items() if uid not in known)
    if orphans:
        # A payment must belong to an order now; these name none that exists. Deciding what to
        # do with a charge record is an operator's call, not a migration's.
        raise RuntimeError(
            f"{len(orphans)} payment(s) name no existing order (ids {orphans[:20]}): reattach "
            "them (reference 'order:<uid>') or delete them, then migrate again."
        )
    for pk, uid in owners.items():
        Payment.objects.filter(pk=pk).update(order_id=uid)
    # Charged before: the last request was at the latest when the row last changed.
    Payment.objects.filter(attempts__gt=0).update(
        last_attempt_at=F("updated_at"), tries=F("attempts")
    )
    # No longer wanted: the payment of a failed or cancelled order, or one a retry replaced.
    current = Order.objects.values_list("payment_id", flat=True)
    Payment.objects.exclude(pk__in=current).update(abandoned_at=now)
    Payment.objects.filter(
        pk__in=Order.objects.filter(status__in=["failed", "cancelled"]).values("payment_id")
    ).update(abandoned_at=now)




class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0003_state_machine_columns'),
        ('payments', '0003_payment_belongs_to_order'),
    ]

    operations = [
        migrations.RunPython(belong_to_orders, migrations.RunPython.noop, elidable=True),
    ]
