"""The new columns of an order, filled once from its log (in a migration of their own: on
PostgreSQL a table with pending trigger events from these updates cannot be altered in the same
transaction); the acting user of earlier log rows, from the username their data kept."""

from django.conf import settings
from django.db import migrations
from django.db.models import Count, Max, Q
from django.utils import timezone

OPEN = ["pending", "reserved", "confirmed"]


def fill_from_logs(apps, schema_editor):
    Order = apps.get_model("orders", "Order")
    OrderLog = apps.get_model("orders", "OrderLog")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    for order in Order.objects.filter(status__in=OPEN).iterator(chunk_size=1000):
        logs = OrderLog.objects.filter(order_id=order.pk)
        reopened = logs.filter(event="retried").aggregate(last=Max("id"))["last"] or 0
        since_reopen = logs.filter(id__gt=reopened)
        facts = since_reopen.aggregate(
            progressed=Max("created_at"),
            reserved=Max("created_at", filter=Q(to_status="reserved")),
            stock=Count("id", filter=Q(event="stock_retry")),
            ship=Count("id", filter=Q(event="shipment_retry")),
        )
        Order.objects.filter(pk=order.pk).update(
            progressed_at=facts["progressed"] or order.created_at,
            reserved_at=facts["reserved"],
            stock_attempts=facts["stock"],
            ship_attempts=facts["ship"],
        )
    users = {}

    def user_id(name):
        if name not in users:
            users[name] = User.objects.filter(username=name).values_list("pk", flat=True).first()
        return users[name]

    for pk, data in list(OrderLog.objects.filter(data__has_key="by").values_list("pk", "data")):
        if user_id(data.get("by")) is not None:
            OrderLog.objects.filter(pk=pk).update(actor_id=user_id(data.get("by")))

    # A confirmed order whose payment a cancellation set out to refund (the refund unanswered,
    # or answered after the 503) was being cancelled: it is now, in the canceller's name, so
    # it never ships and the reconciler finishes the cancellation.
    being_cancelled = Order.objects.filter(
        status="confirmed", payment__status__in=["refund_in_doubt", "refunded"]
    )
    for order in list(being_cancelled):
        asked = (
            OrderLog.objects.filter(order_id=order.pk, event="cancel_refund_unanswered")
            .order_by("-id")
            .first()
        )
        data = asked.data if asked else {}
        Order.objects.filter(pk=order.pk).update(
            cancel_requested_at=asked.created_at if asked else timezone.now(),
            cancel_requested_by_id=user_id(data.get("by")),
            cancel_requested_via=str(data.get("via", "migration"))[:16],
        )




class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0003_state_machine_columns'),
    ]

    operations = [
        migrations.RunPython(fill_from_logs, migrations.RunPython.noop, elidable=True),
    ]
