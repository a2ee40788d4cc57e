"""A payment belongs to its order by a foreign key (on the order's uid) instead of the string
convention reference="order:<uid>"; the columns the retry budget, the late-capture window and
the reconciler's sweep are kept by, filled once for existing rows."""

import uuid

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import F
from django.utils import timezone


def belong_to_orders(apps, schema_editor):
    Payment = apps.get_model("payments", "Payment")
    Order = apps.get_model("orders", "Order")
    now = timezone.now()
    for payment in Payment.objects.filter(order__isnull=True).iterator(chunk_size=1000):
        try:
            uid = uuid.UUID(payment.reference.removeprefix("order:"))
        except ValueError:
            continue
        Payment.objects.filter(pk=payment.pk).update(order_id=uid)
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
        ('payments', '0002_refund_in_doubt'),
    ]

    operations = [
        migrations.RemoveIndex(model_name='payment', name='payment_status_updated'),
        migrations.AddField(
            model_name='payment',
            name='order',
            field=models.ForeignKey(db_column='order_uid', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='payments', to='orders.order', to_field='uid'),
        ),
        migrations.AddField(
            model_name='payment',
            name='abandoned_at',
            field=models.DateTimeField(blank=True, help_text='When its order stopped wanting it (failed, cancelled, or retried with a new payment): from then on a capture on it is refunded.', null=True),
        ),
        migrations.AddField(
            model_name='payment',
            name='checked_at',
            field=models.DateTimeField(blank=True, help_text='When the reconciler last looked at it.', null=True),
        ),
        migrations.AddField(
            model_name='payment',
            name='last_attempt_at',
            field=models.DateTimeField(blank=True, help_text='When the last charge request was sent: for a while after it, the request may still reach the provider and capture, whatever a lookup said meanwhile.', null=True),
        ),
        migrations.AddField(
            model_name='payment',
            name='tries',
            field=models.PositiveIntegerField(default=0, help_text='Times the workflow tried to settle the charge (a charge request or a lookup, answered or not): its retry budget and backoff count these.'),
        ),
        migrations.AlterField(
            model_name='payment',
            name='attempts',
            field=models.PositiveIntegerField(default=0, help_text='Charge requests sent to the provider.'),
        ),
        migrations.RunPython(belong_to_orders, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name='payment',
            name='order',
            field=models.ForeignKey(db_column='order_uid', on_delete=django.db.models.deletion.CASCADE, related_name='payments', to='orders.order', to_field='uid'),
        ),
        migrations.RemoveField(model_name='payment', name='reference'),
        migrations.AddIndex(
            model_name='payment',
            index=models.Index(fields=['order', '-id'], name='payment_by_order'),
        ),
        migrations.AddIndex(
            model_name='payment',
            index=models.Index(fields=['checked_at', 'id'], condition=models.Q(('abandoned_at__isnull', False), ('attempts__gt', 0), ('status__in', ['captured', 'in_doubt', 'not_charged', 'pending', 'refund_in_doubt'])), name='payment_abandoned_to_settle'),
        ),
    ]
