"""A payment belongs to its order by a foreign key (on the order's uid) instead of the string
convention reference="order:<uid>": the column (nullable while the next migration fills it),
and the columns the retry budget, the late-capture window and the reconciler's sweep keep."""

import django.db.models.deletion
from django.db import migrations, models


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
    ]
