"""Filter fields shared by the apps' APIs."""

from datetime import UTC

from django import forms
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField, ModelMultipleChoiceField
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter


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


class Int64ModelMultipleChoiceField(ModelMultipleChoiceField):
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


class IdFilter(filters.NumberFilter):
    """A whole number within the ids' range (1 to 2**63 - 1); anything else is a 400."""

    # The stubs narrow NumberFilter's field to DecimalField; any number field is accepted.
    field_class = forms.IntegerField  # type: ignore[assignment]

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", INT64_MAX)
        super().__init__(*args, **kwargs)


class StrictBooleanField(forms.NullBooleanField):
    """`true`/`false` (or `1`/`0`, any case); anything else is a 400, where Django's
    NullBooleanField would read it as "no filter" and answer everything."""

    default_error_messages = {"invalid": "Enter true or false."}

    def to_python(self, value):
        if value in (None, ""):
            return None
        spelled = str(value).strip().lower()
        if spelled in ("true", "1"):
            return True
        if spelled in ("false", "0"):
            return False
        raise forms.ValidationError(self.error_messages["invalid"], code="invalid")


class StrictBooleanFilter(filters.BooleanFilter):
    field_class = StrictBooleanField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", forms.TextInput)  # the value as sent, for the field to judge
        super().__init__(*args, **kwargs)


class StrictOrderingFilter(OrderingFilter):
    """`ordering` naming a field the list cannot be sorted by is a 400 listing the ones it
    can, where DRF would drop the term and answer in the default order."""

    def remove_invalid_fields(self, queryset, fields, view, request):
        valid = super().remove_invalid_fields(queryset, fields, view, request)
        if len(valid) == len(fields) or getattr(view, "detail", False):  # one object: no order
            return valid
        choices = sorted(
            name for name, _ in self.get_valid_fields(queryset, view, {"request": request})
        )
        unknown = [term for term in fields if term not in valid]
        raise ValidationError(
            {
                self.ordering_param: [
                    f"Cannot order by {', '.join(repr(t) for t in unknown)}; choose from "
                    f"{', '.join(choices)}, each optionally prefixed with '-' for descending."
                ]
            }
        )
