"""What the workflow and the reconciler decide from becomes columns of the order (filled by
the next migration from the log, which nothing reads to decide from then on); the acting user
of a log row becomes a foreign key."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0002_api_idempotency_and_cancel'),
        ('payments', '0002_refund_in_doubt'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(model_name='order', name='order_status_updated'),
        migrations.AddField(
            model_name='order',
            name='cancel_requested_at',
            field=models.DateTimeField(blank=True, help_text='A confirmed order being cancelled: it is not pushed to the warehouse, and the cancellation goes on until it is done or the warehouse has shipped it.', null=True),
        ),
        migrations.AddField(
            model_name='order',
            name='cancel_requested_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='order',
            name='cancel_requested_via',
            field=models.CharField(blank=True, max_length=16),
        ),
        migrations.AddField(
            model_name='order',
            name='progressed_at',
            field=models.DateTimeField(default=django.utils.timezone.now, help_text='Last progress of its processing: a transition, or a retry scheduled.'),
        ),
        migrations.AddField(
            model_name='order',
            name='reconciled_at',
            field=models.DateTimeField(blank=True, help_text='When the reconciler last looked at it.', null=True),
        ),
        migrations.AddField(
            model_name='order',
            name='reserved_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='order',
            name='ship_attempts',
            field=models.PositiveIntegerField(default=0, help_text='Pushes to the warehouse that got no answer.'),
        ),
        migrations.AddField(
            model_name='order',
            name='stock_attempts',
            field=models.PositiveIntegerField(default=0, help_text='Reservations refused for want of stock since it was (re)opened.'),
        ),
        migrations.AddField(
            model_name='orderlog',
            name='actor',
            field=models.ForeignKey(blank=True, help_text='Who did it; empty when the system did.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name='order',
            name='created_at',
            field=models.DateTimeField(auto_now_add=True, db_index=True),
        ),
        migrations.AlterField(
            model_name='order',
            name='payment',
            field=models.OneToOneField(on_delete=django.db.models.deletion.RESTRICT, related_name='+', to='payments.payment'),
        ),
        migrations.AlterField(
            model_name='orderlog',
            name='event',
            field=models.CharField(choices=[('created', 'Created'), ('reserved', 'Reserved'), ('confirmed', 'Confirmed'), ('fulfilled', 'Fulfilled'), ('out_of_stock', 'failed: out of stock'), ('payment_declined', 'failed: payment declined'), ('payment_error', 'failed: payment error'), ('reservation_expired', 'failed: reservation expired'), ('cancelled', 'Cancelled'), ('retried', 'retried by an operator'), ('stock_retry', 'waiting for stock'), ('payment_retry', 'payment retry'), ('payment_in_doubt', 'payment in doubt'), ('payment_looked_up', 'payment looked up'), ('refunded', 'Refunded'), ('shipment_retry', 'shipment retry'), ('shipment_unanswered', 'shipment unanswered'), ('shipment_refused', 'shipment refused'), ('shipped_after_cancel', 'shipped after cancel'), ('cancel_requested', 'cancellation requested'), ('cancel_shipment_unanswered', 'cancellation: warehouse silent'), ('cancel_shipment_refused', 'cancellation: warehouse refused'), ('cancel_refund_unanswered', 'cancellation: refund unanswered'), ('cancel_refund_refused', 'cancellation: refund refused'), ('cancel_refused_shipped', 'cancellation refused: shipped'), ('requeued', 'processing published again'), ('fulfilment_repushed', 'pushed to the warehouse again'), ('reconcile_failed', 'reconciler failed on it')], max_length=48),
        ),
        migrations.AddIndex(
            model_name='order',
            index=models.Index(condition=models.Q(('status__in', ('pending', 'reserved', 'confirmed'))), fields=['progressed_at'], name='order_open_progress'),
        ),
    ]
