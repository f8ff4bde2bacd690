"""The API docs page works offline, and the OpenAPI document says the truth.

- `/schema` references only files this server serves (pinned with the package), each
  answered 200 with its media type: nothing comes from a CDN.
- Per route, the credentials the document names are the ones the server takes: a key route
  refuses a token alone, a token route a key alone; `X-Api-Key` is a scheme of its own.
- 429 where rate limits apply (every /api/v2 route), a description on every parameter,
  `/metrics` listed, a 204 without a body, optional bodies not required, the limits of query
  parameters and of items (a tag is not empty) and the format of cursors stated.
- `OPTIONS` lists every method of a path.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.helpers.http import API, activate, token_headers
from tests.helpers.owners import OwnerKey, unique_agent

KEY = [{"ApiKey": []}, {"ApiKeyHeader": []}]
TOKEN = [{"SessionToken": []}, {"SessionToken": [], "ApiKey": []}, {"SessionToken": [], "ApiKeyHeader": []}]
KEY_ROUTES = {
    ("post", f"{API}/agents/{{agent_id}}/activate"),
    ("get", f"{API}/agents/{{agent_id}}/sessions"),
    ("get", f"{API}/agents"),
    ("post", f"{API}/agents"),
    ("get", f"{API}/agents/{{agent_id}}"),
    ("delete", f"{API}/agents/{{agent_id}}"),
}
TOKEN_OR_KEY_ROUTES = {("post", f"{API}/agents/{{agent_id}}/deactivate")}
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


async def document(client: Any) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def operations(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in doc["paths"].items()
        if path.startswith(prefix)
        for method, operation in item.items()
        if isinstance(operation, dict) and "responses" in operation
    ]


@pytest.mark.parametrize("page", ["/schema", "/schema/swagger"])
async def test_the_docs_page_loads_only_files_of_this_server(client: Any, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert len(references) >= 3, references  # the script, the preset, the style sheet (and the icon)
    assert not re.search(r"https?://|//cdn|jsdelivr|unpkg", html.replace("http://www.w3.org", "")), "a remote URL"
    for reference in references:
        assert reference.startswith("/"), reference
        assert not reference.startswith("//"), reference
        asset = await client.get(reference)
        assert asset.status_code == 200, reference
        extension = reference[reference.rfind(".") :]
        assert asset.headers["content-type"].startswith(MEDIA_TYPES[extension]), (reference, asset.headers)
        assert len(asset.content) > 500
        assert "immutable" in asset.headers["cache-control"]
    # The page's spec is the refined document.
    assert '"SessionToken"' in html
    assert '"ApiKeyHeader"' in html


async def test_only_the_page_files_are_served(client: Any) -> None:
    page = (await client.get("/schema")).text
    script = re.search(r'src="(/schema/assets/[^"]+/)swagger-ui-bundle\.js"', page)
    assert script is not None
    for name in ("LICENSE", "index.css", "swagger-editor-bundle.js", "oauth2-redirect.html", "nope.js"):
        assert (await client.get(script.group(1) + name)).status_code == 404, name
    assert (await client.get("/schema/assets/0.0.0/swagger-ui-bundle.js")).status_code == 404


async def test_credentials_are_documented_per_route(client: Any) -> None:
    doc = await document(client)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {"type": "http", "scheme": "bearer", "description": schemes["ApiKey"]["description"]}
    assert (schemes["ApiKeyHeader"]["type"], schemes["ApiKeyHeader"]["in"], schemes["ApiKeyHeader"]["name"]) == (
        "apiKey",
        "header",
        "X-Api-Key",
    )
    assert (schemes["SessionToken"]["in"], schemes["SessionToken"]["name"]) == ("header", "X-Session-Token")
    assert "security" not in doc or not doc["security"]  # nothing app-wide: each route says its own
    api = operations(doc, API)
    assert len(api) == 23
    for method, path, operation in api:
        if (method, path) in KEY_ROUTES:
            expected = KEY
        elif (method, path) in TOKEN_OR_KEY_ROUTES:
            expected = TOKEN + KEY
        else:
            expected = TOKEN
        assert operation["security"] == expected, (method, path)
    for method, path, operation in operations(doc):
        if path.startswith("/moorcheh/v1"):  # the published memanto sends its key as `x-api-key`
            assert operation["security"] == KEY, (method, path)
        elif not path.startswith(API):
            assert not operation.get("security"), (method, path)


async def test_every_api_route_documents_429_and_503_with_their_headers(client: Any) -> None:
    for method, path, operation in operations(await document(client), API):
        responses = operation["responses"]
        limited = responses["429"]
        assert "rate_limited" in limited["description"], (method, path)
        assert set(limited["headers"]) >= {"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}
        assert limited["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
        assert "Retry-After" in responses["503"]["headers"]
        assert "WWW-Authenticate" in responses["401"]["headers"]
        for status, response in responses.items():
            assert "X-Request-ID" in response["headers"], (method, path, status)
        success = next(r for status, r in responses.items() if status.startswith("2"))
        token_route = {"SessionToken": []} in operation["security"] and not path.endswith("/deactivate")
        assert ("X-Session-Expires-At" in success["headers"]) is token_route, (method, path)


async def test_every_parameter_is_described(client: Any) -> None:
    for method, path, operation in operations(await document(client)):
        for parameter in operation.get("parameters", []):
            assert parameter.get("description"), (method, path, parameter["name"])
            assert "oneOf" not in parameter["schema"], (method, path, parameter)


async def test_metrics_204_and_optional_bodies(client: Any) -> None:
    doc = await document(client)
    assert "get" in doc["paths"]["/metrics"]
    no_content = [
        (method, path)
        for method, path, operation in operations(doc)
        for status, response in operation["responses"].items()
        if status == "204"
        if "content" not in response
    ]
    assert sorted(no_content) == [
        ("delete", f"{API}/agents/{{agent_id}}"),
        ("delete", f"{API}/agents/{{agent_id}}/memories/{{memory_id}}"),
    ]
    bodies = {(m, p): op["requestBody"] for m, p, op in operations(doc) if "requestBody" in op}
    optional = {f"{API}/agents/{{agent_id}}/{route}" for route in ("activate", "remember", "recall", "answer")}
    optional |= {
        f"{API}/session/extend",
        f"{API}/agents/{{agent_id}}/memories/{{memory_id}}/expire",
        f"{API}/agents/{{agent_id}}/recall/recent",
    }
    for (method, path), body in bodies.items():
        assert body["required"] is (path not in optional), (method, path)
        schema = body["content"]["application/json"]["schema"]
        if path in optional:  # no body, or `null`
            assert schema["anyOf"][1] == {"type": "null"}, (method, path, schema)
            assert "$ref" in schema["anyOf"][0]
        else:
            assert "$ref" in schema, (method, path, schema)


async def test_the_limits_of_parameters_and_items_are_stated(client: Any) -> None:
    doc = await document(client)
    recall = {p["name"]: p["schema"] for p in doc["paths"][f"{API}/agents/{{agent_id}}/recall"]["post"]["parameters"]}
    assert recall["limit"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}
    min_score, null = recall["min_score"]["anyOf"]  # an optional number may be given as `null` (absent)
    assert (min_score["minimum"], min_score["maximum"], null) == (0, 1, {"type": "null"})
    assert recall["tags"]["maxItems"] == 20
    assert recall["tags"]["items"]["minLength"] == 1
    assert recall["tags"]["items"]["maxLength"] == 64
    assert recall["query"]["maxLength"] == 1000
    assert recall["created_after"]["format"] == "date-time"
    for path in (f"{API}/agents/{{agent_id}}/recall", f"{API}/agents", f"{API}/agents/{{agent_id}}/sessions"):
        method = "post" if path.endswith("recall") else "get"
        cursor = next(p for p in doc["paths"][path][method]["parameters"] if p["name"] == "cursor")
        assert cursor["schema"]["pattern"] == "^[A-Za-z0-9_-]*$", path
        assert cursor["schema"]["maxLength"] == 1024
    activate_params = doc["paths"][f"{API}/agents/{{agent_id}}/activate"]["post"]["parameters"]
    hours = next(p for p in activate_params if p["name"] == "duration_hours")["schema"]["anyOf"][0]
    assert hours["minimum"] == pytest.approx(1 / 3600)
    assert hours["maximum"] == 24  # MEMANTO_SESSION_MAX_HOURS, not the bound of every setting
    schemas = doc["components"]["schemas"]
    tag = schemas["RememberRequest"]["properties"]["tags"]["items"]
    assert (tag["minLength"], tag["maxLength"]) == (1, 64)
    assert schemas["RecallRequest"]["properties"]["cursor"]["anyOf"][0]["pattern"] == "^[A-Za-z0-9_-]*$"
    assert schemas["BatchRememberRequest"]["properties"]["memories"]["maxItems"] == 100


async def test_the_documented_credentials_are_the_ones_taken(client: Any, owner: OwnerKey) -> None:
    """Each /api/v2 route with nothing, a token alone and a key alone (both ways): refused (401)
    exactly when the document names no such way in. One live agent per route: a way that is let
    in may end its session or delete it, and comes after the ways that are refused."""
    ways = {
        None: lambda _: {},
        "SessionToken": lambda session: token_headers(session["session_token"]),
        "ApiKey": lambda _: {"Authorization": f"Bearer {owner.key}"},
        "ApiKeyHeader": lambda _: {"X-Api-Key": owner.key},
    }
    for method, path, operation in operations(await document(client), API):
        alone = {next(iter(requirement)) for requirement in operation["security"] if len(requirement) == 1}
        agent = unique_agent("auth")
        session = await activate(client, owner.key, agent)
        url = path.replace("{agent_id}", agent).replace("{memory_id}", "00000000-0000-4000-8000-000000000000")
        for way in sorted(ways, key=lambda w: w in alone):  # the refused ways first
            response = await client.request(method, url, headers=ways[way](session))
            if way in alone:
                assert response.status_code != 401, (method, path, way, response.text)
            else:
                assert response.status_code == 401, (method, path, way, response.text)


async def test_options_lists_every_method_of_a_path(client: Any) -> None:
    doc = await document(client)
    for path, item in doc["paths"].items():
        concrete = path.replace("{agent_id}", "some-agent").replace("{memory_id}", "some-memory")
        response = await client.options(concrete)
        assert response.status_code == 204, (path, response.text)
        allowed = {m.strip() for m in response.headers["allow"].split(",")}
        assert allowed == {m.upper() for m in item if m != "parameters"} | {"OPTIONS"}, path
    assert {m.strip() for m in (await client.options(f"{API}/agents")).headers["allow"].split(",")} == {
        "GET",
        "POST",
        "OPTIONS",
    }
