"""Admin helpers shared by the apps, and django-celery-beat's periodic task screen."""

from datetime import datetime

from django.contrib import admin
from django.utils.formats import date_format, time_format
from django.utils.html import format_html
from django.utils.timezone import localtime
from django_celery_beat.admin import PeriodicTaskAdmin, PeriodicTaskForm, TaskSelectWidget
from django_celery_beat.models import PeriodicTask

# The operators' stylesheet (core/static/core/admin.css): status badges and the dashboard's
# chart, in colours readable in both the admin's light and dark themes. A ModelAdmin showing
# badges lists it in its Media.
ADMIN_CSS = "core/admin.css"


class BadgeTone:
    """How a status reads, whatever the model: one colour pair per tone and theme."""

    MUTED = "muted"  # waiting, skipped
    INFO = "info"  # under way
    OK = "ok"  # good so far
    DONE = "done"  # reached its good end
    WARN = "warn"  # stopped short, by choice or by a limit
    BAD = "bad"  # failed


def badge(label: str, tone: str) -> str:
    return format_html('<span class="ops-badge ops-{}">{}</span>', tone, label)


def timestamp(value: datetime | None) -> str:
    """A time as every admin screen shows it (DATETIME_FORMAT, with seconds: see
    orderproj/formats), in a list column that may break between the date and the time,
    never inside either."""
    if value is None:
        return "-"
    local = localtime(value)
    return format_html(
        '<span class="ops-nowrap">{}</span> <span class="ops-nowrap">{}</span>',
        date_format(local, "DATE_FORMAT"),
        time_format(local, "TIME_FORMAT"),
    )


def timestamp_column(field: str, description: str):
    """A list_display column of a date-time field, shown by `timestamp` and sorted by it."""

    @admin.display(description=description, ordering=field)
    def column(obj) -> str:
        return timestamp(getattr(obj, field))

    column.__name__ = field  # its cells' class: field-<field>, as Django's own column's
    return column


class ReadOnlyAdminMixin:
    """Records written only by the system (logs, payments): operators look, never edit."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False


# --- Periodic tasks ---------------------------------------------------------------------------
# django-celery-beat's form leaves "Task (registered)" blank on a task's page and shows the
# task's name only in "Task (custom)", so a schedule of a registered task reads as if none
# were chosen. Here a registered task is selected in the list, and "custom" keeps only names
# the web process does not know (a task of a worker-only module).


class RegisteredTaskForm(PeriodicTaskForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        task = self.instance.task
        if task and not self.is_bound and task in self._registered_names():
            self.initial["regtask"] = task
            self.initial["task"] = ""

    @staticmethod
    def _registered_names() -> set[str]:
        return {name for name, _ in TaskSelectWidget().choices if name}


admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class RegisteredTaskPeriodicTaskAdmin(PeriodicTaskAdmin):
    form = RegisteredTaskForm
