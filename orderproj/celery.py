import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

from orderproj import celery_signals  # noqa: F401  (logging, order context, task metrics)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orderproj.settings")
# The embedded mode's `filesystem://` broker, with atomic writes (see orderproj/fs_transport).
TRANSPORT_ALIASES["filesystem"] = "orderproj.fs_transport:Transport"

app = Celery("orderproj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
