"""The OpenAPI schema, the interactive docs (no CDN) and the committed Postman collection."""

import json
import re
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from core.api.postman import openapi_schema, postman_collection, render

ROOT = Path(settings.BASE_DIR)


@pytest.fixture(scope="module")
def schema() -> dict:
    return openapi_schema()


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_schema_is_valid_openapi_and_generated_without_a_warning(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))

    assert yaml.safe_load((tmp_path / "s.yml").read_text())["openapi"].startswith("3.")


@pytest.mark.django_db
def test_schema_is_served_as_yaml_and_json(api_client, schema):
    as_yaml = api_client.get("/api/schema/")
    as_json = api_client.get("/api/schema/", {"format": "json"})

    assert as_yaml.status_code == as_json.status_code == 200
    assert yaml.safe_load(as_yaml.content) == json.loads(as_json.content) == schema


def test_schema_documents_the_token_scheme_and_the_idempotency_header(schema):
    token = schema["components"]["securitySchemes"]["tokenAuth"]
    assert (token["type"], token["in"], token["name"]) == ("apiKey", "header", "Authorization")

    create = schema["paths"]["/api/orders/"]["post"]
    header = next(p for p in create["parameters"] if p["name"] == "Idempotency-Key")
    assert header["in"] == "header" and not header.get("required")
    assert set(create["responses"]) >= {"202", "400", "401", "409", "415", "422", "429"}
    assert create["responses"]["202"]["headers"]["Location"]["required"] is True


def test_every_error_answer_is_documented_in_the_one_shape(schema):
    error = schema["components"]["schemas"]["Error"]
    body = schema["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    assert set(body["required"]) == {"code", "message", "details"}

    for path, method, operation in operations(schema):
        for status, response in operation["responses"].items():
            if int(status) < 400 or path == "/api/health/":
                continue
            content = response["content"]["application/json"]["schema"]
            assert content == {"$ref": "#/components/schemas/Error"}, (path, method, status)
        if operation.get("security") != [{}]:
            assert "401" in operation["responses"], (path, method)


def test_staff_only_and_detail_operations_document_403_and_404(schema):
    assert "403" in schema["paths"]["/api/stock/"]["get"]["responses"]
    assert "403" in schema["paths"]["/api/products/"]["post"]["responses"]
    for path, _, operation in operations(schema):
        if "{" in path:
            assert "404" in operation["responses"], path


@pytest.mark.django_db
def test_interactive_docs_load_nothing_from_outside(settings):
    # given: static files found where `collectstatic` would take them from
    settings.WHITENOISE_USE_FINDERS = True
    client = Client()  # its handler, and whitenoise, are built with the setting above

    # when
    page = client.get("/api/docs/")

    # then: every asset is ours, served by us
    assert page.status_code == 200
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    assert not re.search(r"https?://|//cdn", html)
    for asset in assets:
        assert asset.startswith("/static/drf_spectacular_sidecar/"), asset
        assert client.get(asset).status_code == 200, asset
    assert "/api/schema/" in html


def test_the_committed_postman_collection_is_current():
    # Regenerate with `python manage.py export_postman` when the API changes.
    committed = (ROOT / "docs" / "postman_collection.json").read_text()

    assert committed == render(postman_collection(openapi_schema()))
    call_command("export_postman", "--check")


def test_the_postman_collection_has_every_operation_with_its_url_and_auth(schema):
    collection = json.loads((ROOT / "docs" / "postman_collection.json").read_text())

    assert collection["info"]["schema"].endswith("/v2.1.0/collection.json")
    assert {v["key"] for v in collection["variable"]} == {"baseUrl", "token"}
    assert collection["auth"]["apikey"][1] == {
        "key": "value",
        "value": "Token {{token}}",
        "type": "string",
    }
    requests = {
        item["name"]: item["request"] for folder in collection["item"] for item in folder["item"]
    }
    assert set(requests) == {op["operationId"] for _, _, op in operations(schema)}
    create = requests["orders_create"]
    assert create["url"]["raw"] == "{{baseUrl}}/api/orders/"
    assert json.loads(create["body"]["raw"]) == {"items": [{"product_id": 1, "quantity": 1}]}
    assert {"key": "Content-Type", "value": "application/json"} in create["header"]
    assert requests["orders_cancel"]["url"]["raw"] == "{{baseUrl}}/api/orders/:id/cancel/"
    assert requests["health_retrieve"]["auth"] == {"type": "noauth"}
    assert "auth" not in requests["stock_list"]  # the collection's token
