"""Webhook subscriptions for staff: /api/webhooks/ (docs/webhooks.md)."""

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from rest_framework import serializers, viewsets
from rest_framework.permissions import IsAdminUser

from core.api.filters import StrictBooleanFilter
from core.api.lookups import Int64LookupMixin
from webhooks.delivery import ENABLED_AGAIN
from webhooks.models import EventType, Subscription
from webhooks.validation import clean_event_types


class SubscriptionSerializer(serializers.ModelSerializer):
    url = serializers.CharField(
        max_length=500,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="Where events are POSTed (http or https).",
    )
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices),
        allow_empty=False,
        help_text="The event types it receives.",
    )
    secret = serializers.CharField(
        read_only=True,
        help_text="Signs every request (Standard Webhooks); verify with it (docs/webhooks.md).",
    )

    class Meta:
        model = Subscription
        fields = [
            "id",
            "url",
            "event_types",
            "description",
            "is_active",
            "secret",
            "failing_since",
            "disabled_at",
            "disabled_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "secret",
            "failing_since",
            "disabled_at",
            "disabled_reason",
            "created_at",
            "updated_at",
        ]

    def validate_event_types(self, value):
        try:
            return clean_event_types(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc

    def update(self, instance, validated_data):
        if validated_data.get("is_active") and not instance.is_active:  # turned back on
            validated_data.update(ENABLED_AGAIN)
        return super().update(instance, validated_data)


class SubscriptionFilter(django_filters.FilterSet):
    is_active = StrictBooleanFilter(help_text="Only active (true) or disabled (false) ones.")

    class Meta:
        model = Subscription
        fields = ["is_active"]


class SubscriptionViewSet(Int64LookupMixin, viewsets.ModelViewSet):
    """Webhook subscriptions (staff only): where order and stock events are sent, signed with
    the subscription's secret. A subscription disabled for failing a day is turned back on
    by setting `is_active` to true."""

    serializer_class = SubscriptionSerializer
    permission_classes = [IsAdminUser]
    queryset = Subscription.objects.all()
    ordering_fields = ["id", "created_at"]
    ordering = ["id"]
    filterset_class = SubscriptionFilter
