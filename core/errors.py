"""Domain errors: services raise these; the API maps each to its HTTP status and error shape.

Every error has a stable machine-readable `code` and, where useful, `details` a caller can act
on. This module imports nothing from the apps, so every app may import it.
"""

from typing import Any


class DomainError(Exception):
    code: str = "domain_error"
    status_code: int = 400
    default_message: str = "The request could not be completed."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None):
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)


class Conflict(DomainError):
    code = "conflict"
    status_code = 409
    default_message = "The request conflicts with the current state of the resource."
