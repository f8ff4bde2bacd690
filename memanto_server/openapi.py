"""The OpenAPI document and the API docs page, both served by the app itself.

Litestar builds the document from the route handlers; `refine` then makes it state what the
server accepts where Litestar's generator loses it:

- request and response bodies are described by msgspec's own JSON Schema of the Structs,
  the same msgspec that decodes them (strictly, `body.py`): every constraint is stated,
  nested ones (a tag's length) included;
- query, header and path parameters state the constraints that the handler declares (and
  Litestar checks); an optional parameter is absent, never `null`;
- a body that may be omitted is not `required`; a 204 has no content;
- problem answers name the headers they carry (`Retry-After`, `RateLimit-*`,
  `WWW-Authenticate`), and every answer its `X-Request-ID`.

The docs page at `/schema` is Swagger UI from the `swagger-ui-py` package (its version pinned
in constraints.txt), whose files this app serves under `/schema/assets/<version>/`: the page
loads nothing from another site and works offline.
"""

from __future__ import annotations

import copy
import functools
import types
import typing
from importlib import metadata, resources
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import FromPath, ParameterKwarg
from litestar.router import Router
from litestar.routes import HTTPRoute
from litestar.typing import FieldDefinition

from memanto_server.errors import PROBLEM_JSON, Problem
from memanto_server.http import API_KEY_BEARER, API_KEY_HEADER, SESSION_EXPIRES_HEADER, SESSION_TOKEN
from memanto_server.settings import Settings

SCHEMA_PATH = "/schema"
ASSETS_PACKAGE = "swagger-ui-py"
ASSETS_VERSION = metadata.version(ASSETS_PACKAGE)
ASSETS_PATH = f"{SCHEMA_PATH}/assets/{ASSETS_VERSION}"
# The files of the page, and how they are served.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}

SECURITY_SCHEMES: dict[str, SecurityScheme] = {
    API_KEY_BEARER: SecurityScheme(
        type="http", scheme="bearer", description="The owner's API key (`mk_…`) as `Authorization: Bearer mk_…`."
    ),
    API_KEY_HEADER: SecurityScheme(
        type="apiKey",
        name="X-Api-Key",
        security_scheme_in="header",
        description="The owner's API key (`mk_…`) in `X-Api-Key` (`Authorization` wins when both are sent).",
    ),
    SESSION_TOKEN: SecurityScheme(
        type="apiKey",
        name="X-Session-Token",
        security_scheme_in="header",
        description="The session token that activate returned. An API key sent beside it must be the same "
        "owner's (else 403 `owner_mismatch`).",
    ),
}

_REQUEST_ID = {
    "X-Request-ID": {
        "description": "The request's id: the caller's, echoed, or a new one.",
        "schema": {"type": "string"},
    }
}
_PROBLEM_HEADERS: dict[str, dict[str, Any]] = {
    "401": {"WWW-Authenticate": {"description": "The scheme to authenticate with.", "schema": {"type": "string"}}},
    "429": {
        "Retry-After": {"description": "Seconds until a request may be let through.", "schema": {"type": "integer"}},
        "RateLimit-Limit": {"description": "Requests allowed in the window.", "schema": {"type": "integer"}},
        "RateLimit-Remaining": {"description": "Requests left in the window.", "schema": {"type": "integer"}},
        "RateLimit-Reset": {"description": "Seconds until a slot frees.", "schema": {"type": "integer"}},
    },
    "503": {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}},
}
# KwargDefinition attribute → JSON Schema keyword, as Litestar turns the one into msgspec checks.
_CONSTRAINTS = {
    "gt": "exclusiveMinimum",
    "ge": "minimum",
    "lt": "exclusiveMaximum",
    "le": "maximum",
    "min_length": "minLength",
    "max_length": "maxLength",
    "pattern": "pattern",
    "format": "format",
}
_ITEM_CONSTRAINTS = {"min_items": "minItems", "max_items": "maxItems"}


def _without_none(annotation: Any) -> Any:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return members[0] if len(members) == 1 else typing.Union[tuple(members)]  # noqa: UP007
    return annotation


def _response_type(handler: HTTPRouteHandler) -> Any:
    returned = handler.parsed_fn_signature.return_type
    if returned.inner_types and returned.is_subclass_of(Response):
        return returned.inner_types[0].annotation
    return returned.annotation


def _parameter_schema(field: FieldDefinition) -> dict[str, Any]:
    """The JSON Schema of what the handler accepts for a parameter: its type (with the
    constraints of its items, which Litestar keeps) and the constraints it declares."""
    schema: dict[str, Any] = msgspec.json.schema(_without_none(field.annotation))
    kwarg = field.kwarg_definition
    is_array = schema.get("type") == "array"
    for attribute, keyword in (_ITEM_CONSTRAINTS if is_array else _CONSTRAINTS).items():
        value = getattr(kwarg, attribute, None)
        if value is not None:
            schema[keyword] = value
    if field.has_default and field.default is not None:
        schema["default"] = field.default
    if field.is_optional and schema.get("type") in ("number", "integer"):
        # Litestar reads `null` (any case) for an optional number as absent, as the body does.
        return {"anyOf": [schema, {"type": "null"}]}
    return schema


# Hours a request may name, at most: a setting (the schemas state the bound of every setting).
_HOURS_SETTINGS = {
    "duration_hours": "session_max_hours",
    "extend_hours": "extend_max_hours",
    "additional_hours": "extend_max_hours",
}


def _number_schemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in [schema, *schema.get("anyOf", [])] if s.get("type") == "number"]


def _bound_hours(document: dict[str, Any], settings: Settings) -> None:
    """State the most hours this server's settings allow where a request may name hours."""
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if parameter["name"] in _HOURS_SETTINGS:
                    for number in _number_schemas(parameter["schema"]):
                        number["maximum"] = getattr(settings, _HOURS_SETTINGS[parameter["name"]])
    for component in document["components"]["schemas"].values():
        for name, prop in component.get("properties", {}).items():
            if name in _HOURS_SETTINGS:
                for number in _number_schemas(prop):
                    number["maximum"] = getattr(settings, _HOURS_SETTINGS[name])


def _handler_parameters(handler: HTTPRouteHandler) -> dict[tuple[str, str], FieldDefinition]:
    """The handler's parameters by (location, wire name), dependencies left out."""
    dependencies = set(handler.resolve_dependencies())
    found = {}
    for field in handler.parsed_fn_signature.parameters.values():
        kwarg = field.kwarg_definition
        if field.name in dependencies or not isinstance(kwarg, ParameterKwarg):
            continue
        name = kwarg.name or field.name
        found[(str(kwarg.param_type.value), name.lower())] = field
    return found


def _refine_operation(operation: dict[str, Any], handler: HTTPRouteHandler, refs: dict[Any, Any]) -> None:
    fields = _handler_parameters(handler)
    for parameter in operation.get("parameters", []):
        field = fields.get((parameter["in"], parameter["name"].lower()))
        if field is not None:
            parameter["schema"] = _parameter_schema(field)
            parameter["required"] = parameter["in"] == "path" or not field.has_default
    data = handler.parsed_data_field
    if data is not None and "requestBody" in operation:
        schema = refs[_without_none(data.annotation)]
        operation["requestBody"] = {
            # A body that may be omitted may also be JSON `null`: both mean "none".
            "required": not data.is_optional,
            "content": {
                "application/json": {"schema": {"anyOf": [schema, {"type": "null"}]} if data.is_optional else schema}
            },
        }
    returned = _response_type(handler)
    for status, response in operation.get("responses", {}).items():
        response["headers"] = {**response.get("headers", {}), **_REQUEST_ID, **_PROBLEM_HEADERS.get(status, {})}
        if status == "204":
            response.pop("content", None)
        elif status == "400":  # Litestar's own entry describes its error shape, not ours
            response["content"] = {PROBLEM_JSON: {"schema": refs[Problem]}}
        elif status.startswith("2") and returned in refs and "application/json" in response.get("content", {}):
            response["content"]["application/json"]["schema"] = refs[returned]
        elif status.startswith(("4", "5")) and PROBLEM_JSON in response.get("content", {}):
            response["content"][PROBLEM_JSON]["schema"] = refs[Problem]


def refine(document: dict[str, Any], app: Litestar) -> dict[str, Any]:
    """A copy of Litestar's document that states what the server accepts (module docstring)."""
    document = copy.deepcopy(document)
    operations: list[tuple[dict[str, Any], HTTPRouteHandler]] = []
    for route in app.routes:
        path = document["paths"].get(route.path_format) if isinstance(route, HTTPRoute) else None
        if path is None:
            continue
        for method, (handler, _) in route.route_handler_map.items():
            if method.lower() in path:
                operations.append((path[method.lower()], handler))
    shapes = {Problem}
    for _, handler in operations:
        if handler.parsed_data_field is not None:
            shapes.add(_without_none(handler.parsed_data_field.annotation))
        shapes.add(_response_type(handler))
    ordered = sorted(shapes, key=repr)
    schemas, components = msgspec.json.schema_components(ordered, ref_template="#/components/schemas/{name}")
    for shape in ordered:  # what a Struct adds to msgspec's schema of it (an "at least one field")
        extra = getattr(shape, "__json_schema_extra__", None)
        if extra and shape.__name__ in components:
            components[shape.__name__].update(extra)
    document.setdefault("components", {}).setdefault("schemas", {}).update(components)
    refs = dict(zip(ordered, schemas, strict=True))
    for operation, handler in operations:
        _refine_operation(operation, handler, refs)
    _bound_hours(document, app.state.settings)
    return document


class _Refined:
    """Each render plugin serves the refined document, made once per document Litestar builds."""

    _source: dict[str, Any] | None = None
    _refined: dict[str, Any] = {}

    def refined(self, request: Request[Any, Any, Any], document: dict[str, Any]) -> dict[str, Any]:
        if document is not self._source:
            self._refined, self._source = refine(document, request.app), document
        return self._refined


class OpenAPIJson(_Refined, JsonRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, self.refined(request, openapi_schema))


@functools.cache
def _asset_file(name: str) -> bytes:
    return resources.files("swagger_ui").joinpath("static", name).read_bytes()


@get(f"/assets/{ASSETS_VERSION}/{{name:str}}", include_in_schema=False, sync_to_thread=False)
def docs_asset(name: FromPath[str]) -> Response[bytes]:
    """A file of the docs page; the path names its version, so a browser may keep it for good."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFoundException()
    return Response(
        _asset_file(name), media_type=media_type, headers={"Cache-Control": "public, max-age=31536000, immutable"}
    )


class OfflineSwagger(_Refined, SwaggerRenderPlugin):
    """Swagger UI, with its script, style sheet and icon served by this app."""

    def __init__(self, path: str | list[str]) -> None:
        super().__init__(
            js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            css_url=f"{ASSETS_PATH}/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
            path=path,
        )

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, self.refined(request, openapi_schema))

    def receive_router(self, router: Router) -> None:
        super().receive_router(router)
        router.register(docs_asset)


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Memanto server",
        version="2.0.0",
        description=(
            "Sessions and memories for AI agents (MEMANTO session API v2). Errors are RFC 9457 problem details "
            "with a stable `code`. Every route of `/api/v2` says which credentials it takes; token routes answer "
            f"with `{SESSION_EXPIRES_HEADER}`."
        ),
        path=SCHEMA_PATH,
        render_plugins=[OfflineSwagger(path=["/", "/swagger"]), OpenAPIJson(path="/openapi.json")],
        components=Components(security_schemes=dict(SECURITY_SCHEMES)),
    )
