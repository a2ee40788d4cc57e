"""Production settings are safe by default. Each case loads the settings in a fresh process
with only the environment it names (settings are read once, at import)."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
PRODUCTION = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/orderproj_settings_check",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/15",
    "PAYMENT_API_URL": "https://payments.example/v1",
    "WAREHOUSE_API_URL": "https://warehouse.example/api",
}
SHOW = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({name: getattr(s, name) for name in (
    "DEBUG", "ALLOWED_HOSTS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY", "SECURE_SSL_REDIRECT", "SECURE_REDIRECT_EXEMPT",
    "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER", "SECURE_CONTENT_TYPE_NOSNIFF",
    "X_FRAME_OPTIONS", "SERVE_SIMULATORS", "PAYMENT_API_URL", "WAREHOUSE_API_URL")}))
"""


def run(args: list[str], env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS")
        and not k.startswith(("SECURE_", "SESSION_", "CSRF_", "BEHIND_", "SERVE_", "PAYMENT_"))
        and not k.startswith("WAREHOUSE_")
    }
    clean.update(env, DJANGO_SETTINGS_MODULE="orderproj.settings", VAR_DIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def settings_in(env: dict[str, str], tmp_path) -> dict:
    result = run(["-c", SHOW], env, tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def strong_key() -> str:
    return secrets.token_urlsafe(50)


@pytest.mark.parametrize("debug", ["", "true"])
def test_a_deployment_without_secret_key_refuses_to_start(tmp_path, debug):
    result = run(["-c", SHOW], {**PRODUCTION, "DEBUG": debug}, tmp_path)

    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY must be set" in result.stderr


def test_debug_is_off_unless_asked_for(tmp_path):
    assert settings_in({**PRODUCTION, "SECRET_KEY": strong_key()}, tmp_path)["DEBUG"] is False
    assert settings_in({}, tmp_path)["DEBUG"] is False  # the embedded demo too
    assert settings_in({"DEBUG": "true"}, tmp_path)["DEBUG"] is True


def test_allowed_hosts_come_from_the_environment(tmp_path):
    env = {**PRODUCTION, "SECRET_KEY": strong_key(), "ALLOWED_HOSTS": "shop.example,api.example"}

    assert settings_in(env, tmp_path)["ALLOWED_HOSTS"] == ["shop.example", "api.example"]


def test_behind_tls_cookies_are_secure_hsts_is_on_and_http_is_redirected(tmp_path):
    shown = settings_in(
        {**PRODUCTION, "SECRET_KEY": strong_key(), "BEHIND_TLS_PROXY": "true"}, tmp_path
    )

    assert shown["SESSION_COOKIE_SECURE"] and shown["CSRF_COOKIE_SECURE"]
    assert shown["SESSION_COOKIE_HTTPONLY"]
    assert shown["SECURE_HSTS_SECONDS"] == 31_536_000
    assert shown["SECURE_SSL_REDIRECT"] is True
    assert r"^api/health/$" in shown["SECURE_REDIRECT_EXEMPT"]  # load balancers' checks
    assert shown["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert shown["SECURE_CONTENT_TYPE_NOSNIFF"] and shown["X_FRAME_OPTIONS"] == "DENY"


def test_the_deploy_check_passes_behind_tls(tmp_path):
    env = {
        **PRODUCTION,
        "SECRET_KEY": strong_key(),
        "BEHIND_TLS_PROXY": "true",
        "ALLOWED_HOSTS": "shop.example",
    }

    result = run(["manage.py", "check", "--deploy"], env, tmp_path)

    assert result.returncode == 0, result.stderr
    # Only the two HSTS options that depend on the whole domain are left to the operator.
    issues = {
        line.split(")")[0].split("(")[-1]
        for line in result.stderr.splitlines()
        if "(security." in line
    }
    assert issues <= {"security.W005", "security.W021"}, result.stderr


@pytest.mark.parametrize("missing", ["PAYMENT_API_URL", "WAREHOUSE_API_URL"])
def test_a_deployment_without_its_payment_service_or_warehouse_refuses_to_start(tmp_path, missing):
    env = {**PRODUCTION, "SECRET_KEY": strong_key()}
    del env[missing]

    result = run(["-c", SHOW], env, tmp_path)

    assert result.returncode != 0
    assert "ImproperlyConfigured: PAYMENT_API_URL and WAREHOUSE_API_URL must be set" in (
        result.stderr
    )


def test_a_deployment_serves_the_simulators_only_when_asked(tmp_path):
    production = settings_in({**PRODUCTION, "SECRET_KEY": strong_key()}, tmp_path)
    embedded = settings_in({}, tmp_path)  # `make run` on a bare machine: no setting at all
    asked = settings_in(
        {
            "DATABASE_URL": PRODUCTION["DATABASE_URL"],
            "CELERY_BROKER_URL": PRODUCTION["CELERY_BROKER_URL"],
            "SECRET_KEY": strong_key(),
            "SERVE_SIMULATORS": "true",
            "PORT": "8123",
        },
        tmp_path,
    )

    assert production["SERVE_SIMULATORS"] is False
    assert production["PAYMENT_API_URL"] == "https://payments.example/v1"
    assert embedded["SERVE_SIMULATORS"] is True
    assert embedded["PAYMENT_API_URL"] == "http://127.0.0.1:8000/sim/payments"
    assert (asked["SERVE_SIMULATORS"], asked["WAREHOUSE_API_URL"]) == (
        True,
        "http://127.0.0.1:8123/sim/warehouse",
    )


def test_the_embedded_demo_makes_its_own_secret_key_once_per_var_dir(tmp_path):
    show = "from django.conf import settings; print(settings.SECRET_KEY)"
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()

    keys = [run(["-c", show], {}, where).stdout.strip() for where in (first, first, second)]

    assert keys[0] == keys[1]  # kept: sessions survive a restart
    assert keys[0] != keys[2] and len(keys[0]) >= 50  # no two checkouts share one
    assert (first / "secret_key").stat().st_mode & 0o777 == 0o600
    assert "insecure" not in keys[0]
