"""A Postman collection (format v2.1) generated from the OpenAPI schema, so the collection
shipped in docs/ always matches the API. Deterministic: the same schema gives the same bytes.

Variables: `baseUrl` (where the API is served) and `token` (the API token, sent as
`Authorization: Token {{token}}` by every request that needs it).
"""

import json
import re
import uuid
from typing import Any

from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer

POSTMAN_SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
METHODS = ("get", "post", "put", "patch", "delete")


def openapi_schema() -> dict[str, Any]:
    """The API's OpenAPI schema as plain JSON data, as `/api/schema/?format=json` serves it."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema))


def postman_collection(schema: dict[str, Any]) -> dict[str, Any]:
    folders: dict[str, list[dict[str, Any]]] = {}
    for path, operations in schema["paths"].items():
        for method in METHODS:
            operation = operations.get(method)
            if operation is None:
                continue
            tag = (operation.get("tags") or ["api"])[0]
            folders.setdefault(tag, []).append(_item(schema, path, method, operation))
    title = schema["info"]["title"]
    return {
        "info": {
            "_postman_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"orderproj:{title}")),
            "name": title,
            "description": schema["info"].get("description", ""),
            "schema": POSTMAN_SCHEMA,
        },
        "auth": {
            "type": "apikey",
            "apikey": [
                {"key": "key", "value": "Authorization", "type": "string"},
                {"key": "value", "value": "Token {{token}}", "type": "string"},
                {"key": "in", "value": "header", "type": "string"},
            ],
        },
        "variable": [
            {"key": "baseUrl", "value": DEFAULT_BASE_URL, "type": "string"},
            {
                "key": "token",
                "value": "",
                "type": "string",
                "description": "The API token: `make run` prints one; POST /api/auth/token/.",
            },
        ],
        "item": [{"name": tag, "item": items} for tag, items in folders.items()],
    }


def _item(schema: dict, path: str, method: str, operation: dict) -> dict[str, Any]:
    parameters = operation.get("parameters", [])
    segments = [re.sub(r"\{(\w+)\}", r":\1", s) for s in path.strip("/").split("/")]
    if path.endswith("/"):
        segments.append("")
    url: dict[str, Any] = {
        "raw": "{{baseUrl}}" + re.sub(r"\{(\w+)\}", r":\1", path),
        "host": ["{{baseUrl}}"],
        "path": segments,
    }
    query = [
        {
            "key": p["name"],
            "value": "",
            "description": p.get("description", ""),
            "disabled": True,
        }
        for p in parameters
        if p["in"] == "query"
    ]
    if query:
        url["query"] = query
    variables = [
        {"key": p["name"], "value": "1", "description": p.get("description", "")}
        for p in parameters
        if p["in"] == "path"
    ]
    if variables:
        url["variable"] = variables

    headers = [
        {
            "key": p["name"],
            "value": "{{$guid}}" if p["name"] == "Idempotency-Key" else "",
            "description": p.get("description", ""),
        }
        for p in parameters
        if p["in"] == "header"
    ]
    request: dict[str, Any] = {
        "method": method.upper(),
        "header": headers,
        "url": url,
        "description": operation.get("description", ""),
    }
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        example = _example(schema, content["application/json"]["schema"])
        headers.insert(0, {"key": "Content-Type", "value": "application/json"})
        request["body"] = {
            "mode": "raw",
            "raw": json.dumps(example, indent=2),
            "options": {"raw": {"language": "json"}},
        }
    if operation.get("security") == [{}] or {} in operation.get("security", []):
        request["auth"] = {"type": "noauth"}  # works anonymously: send no token at all
    return {"name": operation["operationId"], "request": request, "response": []}


def _example(schema: dict, node: dict, name: str = "") -> Any:
    """A plausible, valid value for a JSON schema node: what the collection's bodies show."""
    if "$ref" in node:
        return _example(schema, _resolve(schema, node["$ref"]), name)
    if "example" in node:
        return node["example"]
    for combinator in ("allOf", "oneOf", "anyOf"):
        if combinator in node:
            return _example(schema, node[combinator][0], name)
    if "enum" in node:
        return node["enum"][0]
    kind = node.get("type", "object")
    if kind == "object":
        return {
            key: _example(schema, value, key)
            for key, value in node.get("properties", {}).items()
            if not value.get("readOnly")
        }
    if kind == "array":
        return [_example(schema, node.get("items", {}), name)]
    if kind == "integer":
        return max(node.get("minimum", 1), 1)
    if kind == "number":
        return node.get("minimum", 1)
    if kind == "boolean":
        return True
    return {
        "decimal": "10.00",
        "date-time": "2025-01-01T00:00:00Z",
        "date": "2025-01-01",
        "uuid": "00000000-0000-0000-0000-000000000000",
        "uri": "http://example.com/",
    }.get(node.get("format", ""), name or "string")


def _resolve(schema: dict, ref: str) -> dict:
    node: Any = schema
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def render(collection: dict[str, Any]) -> str:
    return json.dumps(collection, indent=2, ensure_ascii=False) + "\n"
