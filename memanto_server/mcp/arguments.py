"""Tool arguments: input schemas made from the REST request Structs, and arguments read with them.

A tool's arguments are a msgspec Struct that extends the REST route's own request Struct, so
the input schema an MCP client sees carries exactly the REST limits (lengths, ranges, enums),
and arguments are checked by the same decoder: a bad argument is the REST route's 422,
`validation_error`, naming the field.
"""

from __future__ import annotations

import contextlib
import copy
import re
from typing import Any, TypeVar

import msgspec

from memanto_server.errors import FieldProblem, InvalidInput

S = TypeVar("S", bound=msgspec.Struct)

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"missing required field `([^`]+)`")


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    """`node` with every `$ref` into `definitions` replaced by a copy of what it names.

    MCP clients pass a tool's schema to a model as it is; several do not follow `$ref`.
    """
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(copy.deepcopy(definitions[ref.removeprefix("#/$defs/")]), definitions)
        return {key: _inline(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    return node


def input_schema(arguments: type[msgspec.Struct], descriptions: dict[str, str]) -> dict[str, Any]:
    """The JSON schema of a tool's arguments, self-contained, with a description of each field."""
    generated = msgspec.json.schema(arguments)
    schema: dict[str, Any] = _inline(generated, generated.get("$defs", {}))
    schema.pop("$defs", None)
    schema.pop("title", None)
    schema["type"] = "object"
    properties = schema.setdefault("properties", {})
    for name, text in descriptions.items():
        if name in properties:
            properties[name] = {**properties[name], "description": text}
    return schema


def _json_shaped(schema: dict[str, Any]) -> bool:
    """Whether a property takes a list or an object (its schema, or one of its alternatives)."""
    kinds = [schema, *schema.get("anyOf", [])]
    return any(kind.get("type") in ("array", "object") for kind in kinds)


def _unwrap_json_strings(arguments: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Lists and objects that a client sent as JSON text (some desktop clients do), decoded."""
    properties = schema.get("properties", {})
    unwrapped = dict(arguments)
    for name, value in arguments.items():
        if isinstance(value, str) and value[:1] in ("[", "{") and _json_shaped(properties.get(name, {})):
            with contextlib.suppress(msgspec.DecodeError):  # else left as sent: the decoder names the field
                unwrapped[name] = msgspec.json.decode(value)
    return unwrapped


def read_arguments(arguments: dict[str, Any] | None, shape: type[S], schema: dict[str, Any]) -> S:
    """The tool's arguments as `shape`, or the REST route's 422 naming the field."""
    try:
        return msgspec.convert(_unwrap_json_strings(arguments or {}, schema), shape, strict=False)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        message = match.group("message") if match else str(exc)
        path = ((match.group("path") if match else "") or "").lstrip(".")
        if missing := _MISSING.search(message):
            path = f"{path}.{missing.group(1)}" if path else missing.group(1)
        field = path or "arguments"
        problem = FieldProblem(field=field, message=message, source="arguments")
        raise InvalidInput(f"{field}: {message}", errors=[problem]) from None
