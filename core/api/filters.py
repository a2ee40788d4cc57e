"""Filter fields shared by the apps' APIs."""

from datetime import UTC

from django import forms
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, converted to UTC: PostgreSQL refuses UTC offsets beyond ±16 h
    that Python accepts, and a date at the edge of Python's range may not convert at all.
    Either is a 400, not a database error."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return value
        try:
            return value.astimezone(UTC)
        except OverflowError as exc:
            raise forms.ValidationError("Enter a date/time within range.", code="invalid") from exc


class UtcIsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


# The range of the BIGINT ids (PostgreSQL's bigint, SQLite's INTEGER): a value past it names no
# row, and SQLite cannot even be asked (Python raises OverflowError binding it).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def past_int64(value) -> bool:
    """Whether `value` spells an integer outside the ids' range (one that names no row). Not
    an integer at all: False, left to the caller's own checks."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return False
    return not INT64_MIN <= number <= INT64_MAX


class Int64ModelMultipleChoiceField(filters.ModelMultipleChoiceFilter.field_class):
    """Ids outside the 64-bit range are invalid choices (a 400, like an unknown id)."""

    def _check_values(self, value):
        for pk in value:
            if past_int64(pk):
                raise forms.ValidationError(
                    self.error_messages["invalid_choice"],
                    code="invalid_choice",
                    params={"value": pk},
                )
        return super()._check_values(value)


class Int64ModelMultipleChoiceFilter(filters.ModelMultipleChoiceFilter):
    field_class = Int64ModelMultipleChoiceField
