"""Payments abandoned before this release without ever being charged (their order failed or
was cancelled first) are voided, as they would be now."""

from django.db import migrations


def void_never_charged(apps, schema_editor):
    Payment = apps.get_model("payments", "Payment")
    Payment.objects.filter(status="pending", attempts=0, abandoned_at__isnull=False).update(
        status="voided"
    )


class Migration(migrations.Migration):
    dependencies = [("payments", "0006_payment_status_voided")]

    operations = [migrations.RunPython(void_never_charged, migrations.RunPython.noop)]
