"""uvicorn's httptools protocol, with limits on what one connection may hold.

uvicorn bounds the idle time between two requests of a connection (`timeout_keep_alive`,
given to it as a setting) but, with httptools, nothing else: a client could send headers
without end (a 50 MB header was read whole), as many headers as it liked, or open a
connection and send nothing, or half a request, and keep it for as long as it pleased.
(h11's `h11_max_incomplete_event_size` bounds the head on the other protocol only, and no
protocol has a time limit on receiving a request.) This subclass adds what is missing:

- the request line and headers: at most `max_header_bytes` bytes and `max_headers`
  headers, else 431 and the connection closes;
- from the connection's start, or the end of the previous response, the whole head must
  arrive within `header_timeout` seconds, and the whole body within `body_timeout` seconds
  after the head, else 408 (nothing, when nothing of a request came) and the connection
  closes. A client that trickles a byte at a time does not push either deadline back.

The answers are problem documents, written by the protocol itself (the app never sees such
a request), as is the 400 for a request that is not HTTP at all (a NUL in a header, say);
each is logged once, as a warning, without a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httptools
import msgspec
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from memanto_server.errors import PROBLEM_JSON, Problem

logger = logging.getLogger("memanto.http")


class ConnectionLimits(msgspec.Struct, frozen=True):
    max_header_bytes: int
    max_headers: int
    header_timeout: float
    body_timeout: float


class _Refused(Exception):
    """Raised in a parser callback to stop reading a request that breaks a limit."""

    def __init__(self, status: int, code: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail


def _too_large(detail: str) -> _Refused:
    return _Refused(431, "request_header_fields_too_large", "Request header fields too large", detail)


def _too_slow(detail: str) -> _Refused:
    return _Refused(408, "request_timeout", "Request timeout", detail)


def problem_response(refused: _Refused) -> bytes:
    body = msgspec.json.encode(
        Problem(
            type=f"https://memanto.dev/problems/{refused.code.replace('_', '-')}",
            title=refused.title,
            status=refused.status,
            detail=refused.detail,
            code=refused.code,
        )
    )
    head = (
        f"HTTP/1.1 {refused.status} {refused.title}\r\n"
        f"content-type: {PROBLEM_JSON}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with ConnectionLimits (module docstring). uvicorn makes one per
    connection; `serve` hands it the limits through `functools.partial`."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ConnectionLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True  # waiting for a request's line and headers
        self._began_message = False  # some of the awaited request came
        self._began_in_chunk = False  # a request began in the chunk being read
        self._head_bytes = 0  # of the head's parts the parser has handed over
        self._raw_head_bytes = 0  # of chunks read wholly within the head (bounds what the parser holds)
        self._headers = 0
        self._has_body = False
        self._refused = False

    # Deadlines.

    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if phase == "head" and not self._began_message:
            self.transport.close()  # nothing of a request came: no one to answer
            return
        seconds = self.limits.header_timeout if phase == "head" else self.limits.body_timeout
        self._refuse(_too_slow(f"the request's {'headers' if phase == 'head' else 'body'} took over {seconds:g} s"))

    # uvicorn's protocol interface.

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout, "head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._began_in_chunk = False
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Refused):
                self._refuse(exc.__context__)
                return
            self._invalid()
            return
        except httptools.HttpParserUpgrade:
            self._disarm()
            if self._should_upgrade():  # as uvicorn does
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            self._invalid()
            return
        if self._in_head and self._began_message and not self._began_in_chunk:
            self._raw_head_bytes += len(data)
            if self._raw_head_bytes > self.limits.max_header_bytes:
                self._refuse(_too_large(f"the request's headers are over {self.limits.max_header_bytes} bytes"))

    def _invalid(self) -> None:
        # uvicorn answers a plain-text 400; the app answers problem documents, and so does this.
        self._refuse(_Refused(400, "bad_request", "Bad request", "the request is not valid HTTP/1.1"))

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # uvicorn starts the next request read ahead, if any
        super().on_response_complete()
        if self.transport.is_closing() or pipelined:
            return
        if self._in_head and self._began_message:
            return  # the next request's head is on its way, on the deadline armed when it began
        self._in_head, self._began_message = True, False
        self._arm(self.limits.header_timeout, "head")

    # Parser callbacks.

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._began_message, self._began_in_chunk = True, True, True
        self._head_bytes = self._raw_head_bytes = self._headers = 0
        self._has_body = False
        if self._deadline is None:
            self._arm(self.limits.header_timeout, "head")

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        if self._headers > self.limits.max_headers:
            raise _too_large(f"the request has over {self.limits.max_headers} headers")
        self._count(len(name) + len(value) + 4)
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._has_body = True
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._has_body:
            self._arm(self.limits.body_timeout, "body")
        else:
            self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # Refusing.

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.limits.max_header_bytes:
            raise _too_large(f"the request's headers are over {self.limits.max_header_bytes} bytes")

    def _may_answer(self) -> bool:
        """Whether a response of ours would answer the request being read: not while another
        response is on the wire, nor when the app has answered this request already."""
        cycle = self.cycle
        if self._in_head:  # `cycle` is the previous request's, if any
            return cycle is None or cycle.response_complete or not cycle.response_started
        return cycle is None or not cycle.response_started

    def _refuse(self, refused: _Refused) -> None:
        self._refused = True
        self._disarm()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        logger.warning("refused a request from %s: %d %s (%s)", client, refused.status, refused.code, refused.detail)
        if self._may_answer():
            self.transport.write(problem_response(refused))
        if self.cycle is not None:
            self.cycle.keep_alive = False
        self.transport.close()
