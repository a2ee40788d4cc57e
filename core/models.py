from django.db import models


def moment(help_text: str = "") -> models.DateTimeField:
    """A time that may not have come: when something happened last, or until when it holds
    (empty: never, or not now)."""
    return models.DateTimeField(null=True, blank=True, help_text=help_text)


class Lease(models.Model):
    """A named, expiring lock held in the database, for work that must never run twice at
    once in the whole deployment (however many workers and beats there are). Expiry frees a
    lease whose holder died."""

    name = models.CharField(max_length=64, primary_key=True)
    holder = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"lease {self.name} ({self.holder or 'free'})"
