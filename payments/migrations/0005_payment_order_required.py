"""Every payment has its order now: the foreign key becomes required, the old reference goes."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('payments', '0004_fill_payment_order'),
    ]

    operations = [
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
