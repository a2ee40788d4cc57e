import pytest


@pytest.mark.django_db
def test_health_is_200_when_database_and_broker_answer(api_client):
    response = api_client.get("/api/health/")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is True


@pytest.fixture
def unreachable_broker(settings):
    # A real Redis client against a port nothing listens on: the check must fail fast.
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"


@pytest.mark.django_db
def test_health_is_503_naming_the_broker_when_it_is_unreachable(api_client, unreachable_broker):
    response = api_client.get("/api/health/")

    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["broker"]["error"]
    assert body["error"]["code"] == "service_unavailable"
    assert body["error"]["details"]["unreachable"] == ["broker"]
    assert "broker" in body["error"]["message"]


@pytest.mark.django_db
def test_unknown_api_path_is_json_404(client):
    response = client.get("/api/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
