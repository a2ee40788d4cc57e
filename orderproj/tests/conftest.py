import pytest


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """These tests create several users each; the production hasher takes ~0.2 s a user."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
