"""Reading a JSON request body: strictly, and never with a 500.

The body of a route is read and checked before anything else of the request, credentials
included, so that a malformed body is answered the same way whoever sends it:

- a `Content-Type` that is not JSON (when there is a body and a `Content-Type`) → 415;
- not UTF-8, not JSON, or nested deeper than MAX_JSON_DEPTH → 400 `bad_request`;
- JSON of the wrong shape → 422 `validation_error`, decoded *strictly*: `"0.5"` is not a
  number and `1700000000` is not a time (Litestar's own conversion is lenient, for query
  strings, where everything is text). A number written `2.0` where an integer goes is the
  integer, as in JSON Schema.

The handler then receives the decoded Struct as is.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, HTTPException, ValidationException
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE
from litestar.types import Empty

from memanto_server.http import header
from memanto_server.limits import MAX_BATCH, MAX_JSON_DEPTH


def is_json_media_type(media_type: str) -> bool:
    media_type = media_type.strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def nested_deeper_than(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _validation_problem(error: msgspec.ValidationError) -> ValidationException:
    # The shape of Litestar's own errors, so that problems.py names the field the same way:
    # `Expected `str`, got `int` - at `$.memories[3].content`` → key `data.memories[3].content`.
    message, _, path = str(error).partition(" - at `$")
    key = "data" + path.rstrip("`")
    return ValidationException(
        detail="the JSON body is not valid", extra=[{"message": message, "key": key, "source": "body"}]
    )


_UNDECIDED = object()


def _decoded_at_once(body: bytes, shape: Any) -> Any:
    """The body decoded straight into `shape`, or _UNDECIDED when it cannot be, or could nest
    too deep: a body with at most MAX_JSON_DEPTH brackets cannot. (Decoding into a Struct
    skips the fields it does not have without reading them: the UTF-8 of the whole body is
    checked first.)"""
    if shape is Any or body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH:
        return _UNDECIDED
    try:
        if not body.isascii():
            body.decode()
        return msgspec.json.decode(body, type=shape, strict=True)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return _UNDECIDED


def decode_json_body(body: bytes, shape: Any) -> Any:
    """The body as `shape`, decoded strictly; a ClientException (400) or a
    ValidationException (422) when it cannot be.

    The common case, a body that decodes into `shape` at once, is done in one step; anything
    else (a refusal of any kind, an integral float where an integer goes, many brackets) takes
    the steps below, which give the same value and say what is wrong."""
    value = _decoded_at_once(body, shape)
    if value is not _UNDECIDED:
        return value
    try:
        value = msgspec.json.decode(body)
    except UnicodeDecodeError:
        raise ClientException("the body is not valid UTF-8") from None
    except RecursionError:
        raise ClientException(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except msgspec.DecodeError as exc:
        raise ClientException(f"the body is not valid JSON: {exc}") from None
    if isinstance(value, dict | list) and nested_deeper_than(value, MAX_JSON_DEPTH):
        raise ClientException(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
    if shape is Any:
        return value
    for _ in range(MAX_INTEGRAL_FLOATS):
        try:
            return msgspec.convert(value, shape, strict=True)
        except msgspec.ValidationError as exc:
            if not _integral_float_to_int(value, str(exc)):
                raise _validation_problem(exc) from None
    raise ClientException("the JSON body has too many numbers written as `2.0` where an integer goes")


# JSON does not tell 2 from 2.0, and JSON Schema's `integer` admits both; msgspec's strict
# conversion refuses a float for an int. Such a float, where an int goes, is read as the int.
MAX_INTEGRAL_FLOATS = 2 * MAX_BATCH + 2
_INT_GOT_FLOAT = "Expected `int`, got `float` - at `$"
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _integral_float_to_int(value: Any, error: str) -> bool:
    """Replace, in `value`, the integral float that `error` complains of by its int; False
    when the error is of another kind, or the float is not integral."""
    if not error.startswith(_INT_GOT_FLOAT):
        return False
    steps = [name or int(index) for name, index in _STEP.findall(error[len(_INT_GOT_FLOAT) :].rstrip("`"))]
    if not steps:
        return False
    parent = value
    try:
        for step in steps[:-1]:
            parent = parent[step]
        number = parent[steps[-1]]
    except (KeyError, IndexError, TypeError):
        return False
    if not isinstance(number, float) or not number.is_integer():
        return False
    parent[steps[-1]] = int(number)
    return True


class StrictJsonRequest(Request[Any, Any, Any]):
    """The app's request class: its JSON body is read as `decode_json_body` says."""

    async def json(self) -> Any:
        if self._json is not Empty:
            return self._json
        body = await self.body()
        media_type = header(self, b"content-type")
        if body and media_type and not is_json_media_type(media_type.partition(";")[0]):
            raise HTTPException(
                status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                detail=f"the body must be JSON (`Content-Type: application/json`), not `{media_type[:100]}`",
            )
        data_field = self.route_handler.parsed_data_field
        shape = data_field.annotation if data_field is not None else Any
        self._json = decode_json_body(body or b"null", shape)
        return self._json
