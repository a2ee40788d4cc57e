from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.validators import URLValidator
from django.db import transaction
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from core.admin import (
    ADMIN_CSS,
    BadgeTone,
    ReadOnlyAdminMixin,
    ReadOnlyInline,
    badge,
    timestamp,
    timestamp_column,
)
from webhooks.delivery import (
    ENABLED_AGAIN,
    deliveries_redeliver,
    deliveries_skip,
    deliveries_waiting,
    subscriptions_enable,
)
from webhooks.dispatch import wake_webhook_workers
from webhooks.models import Attempt, Delivery, DeliveryStatus, Event, EventType, Subscription
from webhooks.validation import clean_event_types, clean_secret


class SubscriptionForm(forms.ModelForm):
    url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="Where events are POSTed (http or https).",
    )
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = Subscription
        fields = ["url", "event_types", "description", "is_active", "secret"]

    def clean_event_types(self):
        return clean_event_types(self.cleaned_data["event_types"])

    def clean_secret(self):
        return clean_secret(self.cleaned_data["secret"])


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": [ADMIN_CSS]}

    form = SubscriptionForm
    list_display = ["id", "url", "types", "state", "failing", "deliveries"]
    list_filter = ["is_active"]
    search_fields = ["url", "description"]
    readonly_fields = [
        "created_at",
        "updated_at",
        "failing_since",
        "disabled_at",
        "disabled_reason",
    ]
    actions = ["enable", "skip_waiting"]

    def save_model(self, request, obj, form, change):
        if change and obj.is_active and "is_active" in form.changed_data:  # turned back on
            for field, value in ENABLED_AGAIN.items():
                setattr(obj, field, value)
        super().save_model(request, obj, form, change)
        transaction.on_commit(wake_webhook_workers)

    @admin.display(description="Events")
    def types(self, sub: Subscription) -> str:
        return ", ".join(sub.event_types)

    @admin.display(description="State", ordering="is_active")
    def state(self, sub: Subscription) -> str:
        if sub.is_active:
            return badge("active", BadgeTone.OK)
        return format_html(
            '{}<br><span class="ops-quiet">{}</span>',
            badge("disabled", BadgeTone.BAD),
            sub.disabled_reason,
        )

    @admin.display(description="Failing since", ordering="failing_since")
    def failing(self, sub: Subscription) -> str:
        return timestamp(sub.failing_since) if sub.failing_since else "-"

    @admin.display(description="Deliveries")
    def deliveries(self, sub: Subscription) -> str:
        url = reverse("admin:webhooks_delivery_changelist")
        return format_html('<a href="{}?subscription__id__exact={}">deliveries</a>', url, sub.pk)

    @admin.action(description="Enable the selected subscriptions (their failing clock restarts)")
    def enable(self, request, queryset):
        count = subscriptions_enable(subscription_ids=list(queryset.values_list("pk", flat=True)))
        transaction.on_commit(wake_webhook_workers)
        self.message_user(request, f"{count} subscription(s) enabled.", messages.SUCCESS)

    @admin.action(description="Skip what waits for the selected subscriptions (asks first)")
    def skip_waiting(self, request, queryset):
        """Events kept for a subscription while it was disabled are sent when it is enabled;
        this gives them up instead, after showing how many per subscription."""
        subscriptions = list(queryset.order_by("pk"))
        waiting = deliveries_waiting(subscription_ids=[s.pk for s in subscriptions])
        if request.POST.get("post") == "yes":
            by = request.user.get_username() or f"user {request.user.pk}"
            skipped = deliveries_skip(subscription_ids=list(waiting), by=by)
            self.message_user(request, f"{skipped} waiting deliveries skipped.", messages.SUCCESS)
            return None
        rows = [
            {
                "subscription": s,
                "state": "active" if s.is_active else "disabled",
                "waiting": waiting.get(s.pk, 0),
            }
            for s in subscriptions
            if waiting.get(s.pk)
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Skip waiting deliveries?",
            "opts": self.model._meta,
            "rows": rows,
            "total": sum(waiting.values()),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(
            request, "admin/webhooks/subscription/skip_confirmation.html", context
        )


DELIVERY_TONES: dict[str, str] = {
    DeliveryStatus.PENDING: BadgeTone.INFO,
    DeliveryStatus.DELIVERED: BadgeTone.DONE,
    DeliveryStatus.FAILED: BadgeTone.BAD,
}


class AttemptInline(ReadOnlyInline):
    model = Attempt
    fields = ["number", "started_at", "duration_ms", "status_code", "error", "response_excerpt"]
    # django-stubs read `fields` as field groups, which readonly_fields does not take.
    readonly_fields = fields  # type: ignore[assignment]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every event sent to every subscription, with each attempt. Operators look, and
    redeliver: **Redeliver** asks for the selected ones again, now."""

    class Media:
        css = {"all": [ADMIN_CSS]}

    list_display = [
        "id",
        timestamp_column("created_at", "Created at"),
        "event_link",
        "subscription",
        "status_badge",
        "attempts",
        "last",
        "next_attempt",
    ]
    list_filter = ["status", "event__type", "subscription", "created_at"]
    date_hierarchy = "created_at"
    search_fields = ["=event__uid", "=event__subject_id"]
    search_help_text = "An event's id, or its order's (or product's) id."
    list_select_related = ["event", "subscription"]
    show_full_result_count = False
    inlines = [AttemptInline]
    fields = [
        "event_link",
        "subscription",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "last_status_code",
        "last_error",
        "body",
    ]
    # django-stubs read `fields` as field groups, which readonly_fields does not take.
    readonly_fields = fields  # type: ignore[assignment]
    actions = ["redeliver"]

    @admin.display(description="Event")
    def event_link(self, delivery: Delivery) -> str:
        event = delivery.event
        if event.type.startswith("order."):
            target = reverse("admin:orders_order_change", args=[event.subject_id])
            return format_html(
                '{}<br><a href="{}">order {}</a>', event.type, target, event.subject_id
            )
        return format_html("{}<br>product {}", event.type, event.subject_id)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, delivery: Delivery) -> str:
        return badge(delivery.status, DELIVERY_TONES[delivery.status])

    @admin.display(description="Last answer")
    def last(self, delivery: Delivery) -> str:
        if delivery.last_status_code:
            return f"HTTP {delivery.last_status_code}"
        return delivery.last_error[:80] or "-"

    @admin.display(description="Next attempt", ordering="next_attempt_at")
    def next_attempt(self, delivery: Delivery) -> str:
        if delivery.status != DeliveryStatus.PENDING:
            return "-"
        return timestamp(delivery.next_attempt_at)

    @admin.display(description="Body")
    def body(self, delivery: Delivery) -> str:
        return format_html("<pre>{}</pre>", delivery.event.body or "(rendered at its first send)")

    @admin.action(description="Redeliver the selected deliveries now", permissions=["view"])
    def redeliver(self, request, queryset):
        count = deliveries_redeliver(delivery_ids=list(queryset.values_list("pk", flat=True)))
        transaction.on_commit(wake_webhook_workers)
        self.message_user(request, f"{count} delivery(ies) queued again.", messages.SUCCESS)


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The outbox, read-only: what happened, and when it was handed to the subscriptions."""

    list_display = [
        "id",
        timestamp_column("created_at", "At"),
        "type",
        "subject_id",
        "uid",
        "dispatched",
    ]
    list_filter = ["type", "created_at"]
    date_hierarchy = "created_at"
    search_fields = ["=uid", "=subject_id"]
    show_full_result_count = False

    @admin.display(description="Dispatched at", ordering="dispatched_at")
    def dispatched(self, event: Event) -> str:
        return timestamp(event.dispatched_at)
