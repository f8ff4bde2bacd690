"""Logging: one format for the whole process, credentials never in a line, and no log
I/O on the event loop.

Every line the process writes leaves through one `LineWriter`: a thread of its own that
turns what was logged into bytes and writes it to stderr in batches, one `write` per
batch. A finished request costs the event loop one tuple appended to a deque; its access
line (formatting, redaction, the system call) and whatever else observes finished requests
(the request metrics) happen on the writer's thread. Records of other loggers go through
the standard `logging` machinery (they are few) into the same writer, so the stream keeps
their order; an error is written at once, with everything before it.

The redaction filter sits on the handler, so it covers every logger (ours, Litestar's,
uvicorn's, the drivers') at every level; access lines are redacted field by field. Both
are defence in depth behind the rule that no code logs a key or token in the first place.
In the text format, control characters are escaped, so that nothing a client sends can
start a line of its own.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import re
import select
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from memanto_server.settings import Settings

# An API key (`mk_…`) or anything shaped like a JWT (three base64url parts, `eyJ…`).
SECRET_PATTERN = re.compile(r"mk_[A-Za-z0-9_-]{8,}|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
REDACTED = "[redacted]"
ACCESS_LOGGER = "memanto.access"


def redact(text: str) -> str:
    return SECRET_PATTERN.sub(REDACTED, text)


def _redacted(text: str) -> str:
    """`redact`, without the regular expression for text that cannot hold a secret (most)."""
    return redact(text) if "mk_" in text or "eyJ" in text else text


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED_CONTROLS = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED_CONTROLS.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape_controls(text: str) -> str:
    """Control characters as escapes (`\\n`, `\\x1b`, `\\u2028`): the text stays on one line."""
    return _CONTROL.sub(_escape_control, text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = redact(str(exc))
            if text != str(exc):
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)
        return redact(msgspec.json.encode(entry).decode())


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value …` on one line; a traceback follows on lines of
    its own, indented, so that a line at the margin is always the start of a record."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.getMessage())
        record.asctime = self.formatTime(record)
        line = self.formatMessage(record)
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={escape_controls(str(v))}" for k, v in extras.items())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for block in (record.exc_text, self.formatStack(record.stack_info) if record.stack_info else ""):
            if block:
                line += "".join("\n    " + escape_controls(part) for part in block.splitlines())
        return redact(line)


# --- access lines ---------------------------------------------------------------------------

# What the request path hands over: (end time, request id, method, route template, status,
# seconds, owner id, agent id). A tuple, because building it is all the event loop pays for.
AccessEntry = tuple[float, str, str, str, int, float, str | None, str | None]


class AccessLine(msgspec.Struct):
    """One access line in the JSON format: these fields, in this order (docs/operations.md)."""

    ts: str
    level: str
    logger: str
    msg: str
    request_id: str
    method: str
    route: str
    status: int
    duration_ms: float
    owner_id: str | None
    agent_id: str | None


class _Clock:
    """Timestamps of log lines: the seconds formatted once per second, the milliseconds
    looked up, and the last one kept (a busy server logs many lines in one millisecond)."""

    def __init__(self, seconds_format: str, to_struct: Callable[[float], time.struct_time], millis: str) -> None:
        self._format, self._to_struct = seconds_format, to_struct
        self._millis = [millis % n for n in range(1000)]
        self._second = self._milli = -1
        self._prefix = self._last = ""

    def __call__(self, when: float) -> str:
        milli = int(when * 1000)
        if milli != self._milli:
            second, fraction = divmod(milli, 1000)
            if second != self._second:
                self._second, self._prefix = second, time.strftime(self._format, self._to_struct(second))
            self._milli, self._last = milli, self._prefix + self._millis[fraction]
        return self._last


def _milliseconds(seconds: float) -> float:
    """Seconds → milliseconds with two decimals (as `round(…, 2)`, for a fraction of its cost)."""
    return int(seconds * 100_000 + 0.5) / 100


class AccessRenderer:
    """Access entries and ready lines → the bytes of one batch (on the writer's thread).
    Without `access`, entries give no line (MEMANTO_LOG_LEVEL above INFO)."""

    def __init__(self, *, use_json: bool, access: bool = True) -> None:
        self.use_json = use_json
        self.access = access
        self._encoder = msgspec.json.Encoder()
        self._json_clock = _Clock("%Y-%m-%dT%H:%M:%S", time.gmtime, ".%03dZ")
        self._text_clock = _Clock("%Y-%m-%d %H:%M:%S", time.localtime, ",%03d")

    def __call__(self, items: list[bytes | AccessEntry]) -> bytes:
        out = bytearray()
        lines: list[AccessLine] = []  # JSON lines waiting to be encoded together (`encode_lines`)
        for item in items:
            if isinstance(item, bytes):
                if lines:
                    out += self._encoder.encode_lines(lines)
                    lines = []
                out += item
            elif not self.access:
                continue
            elif self.use_json:
                lines.append(self._json(item))
            else:
                out += self._text(item).encode("utf-8", "backslashreplace")
        if lines:
            out += self._encoder.encode_lines(lines)
        return bytes(out)

    def _json(self, entry: AccessEntry) -> AccessLine:
        when, request_id, method, route, status, seconds, owner_id, agent_id = entry
        method = _redacted(method)
        return AccessLine(
            ts=self._json_clock(when),
            level="info",
            logger=ACCESS_LOGGER,
            msg=f"{method} {route} {status}",
            request_id=_redacted(request_id),
            method=method,
            route=route,
            status=status,
            duration_ms=_milliseconds(seconds),
            owner_id=owner_id,
            agent_id=_redacted(agent_id) if agent_id else agent_id,
        )

    def _text(self, entry: AccessEntry) -> str:
        when, request_id, method, route, status, seconds, owner_id, agent_id = entry
        method = escape_controls(_redacted(method))
        agent = escape_controls(_redacted(agent_id)) if agent_id else agent_id
        return (
            f"{self._text_clock(when)} INFO    {ACCESS_LOGGER}: {method} {route} {status} "
            f"request_id={_redacted(request_id)} method={method} route={route} status={status} "
            f"duration_ms={_milliseconds(seconds)} owner_id={owner_id} agent_id={agent}\n"
        )


# --- the writer -----------------------------------------------------------------------------


class LineWriter:
    """Lines to a file descriptor, written by a thread of its own in batches.

    `put` appends to a deque and returns: no lock, no formatting, no system call on the
    caller's thread. Every `interval` the thread takes what is pending, hands its access
    entries to the `observers`, renders the batch and writes it with one `write`. Without
    the thread (before `start`, after `stop`) and beyond `max_pending` lines waiting (a
    stalled reader of stderr), `put` writes at once instead: a line is delayed, never
    dropped. `start` and `stop` nest, so several apps in one process (tests) share the thread.
    """

    def __init__(self, fd: int, *, interval: float = 0.05, max_pending: int = 100_000) -> None:
        self.fd = fd
        self.interval = interval
        self.max_pending = max_pending
        self.render: Callable[[list[Any]], bytes] = AccessRenderer(use_json=False)
        # Called with the access entries of every batch, on the thread that writes it (`flush`).
        self.observers: list[Callable[[list[AccessEntry]], None]] = []
        self._pending: collections.deque[Any] = collections.deque()
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._users = 0

    @property
    def running(self) -> bool:
        return self._thread is not None

    def put(self, item: Any) -> None:
        self._pending.append(item)
        if self._thread is None or len(self._pending) > self.max_pending:
            self.flush()

    def flush(self) -> None:
        """Observe and write everything pending now, on the caller's thread."""
        with self._write_lock:
            pending = self._pending
            count = len(pending)
            if count:
                items = [pending.popleft() for _ in range(count)]
                self._observe(items)
                self._write(self._render(items))

    def _observe(self, items: list[Any]) -> None:
        if not self.observers:
            return
        entries = [item for item in items if type(item) is tuple]
        for observe in self.observers:
            try:
                observe(entries)
            except Exception as exc:  # a bug: say so, and keep the thread (and the lines) going
                self._write(redact(f"log writer: {observe!r} failed: {exc!r}\n").encode())

    def _render(self, items: list[Any]) -> bytes:
        try:
            return self.render(items)
        except Exception as exc:  # a bug: the lines are lost, but not in silence, and not the next ones
            return redact(f"log writer: {len(items)} lines not written: {exc!r}\n").encode()

    def start(self) -> None:
        with self._state_lock:
            self._users += 1
            if self._thread is None:
                self._stopping = threading.Event()
                self._thread = threading.Thread(target=self._run, name="memanto-log-writer", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Stop the thread once its last user stops; everything pending is written first."""
        with self._state_lock:
            self._users = max(0, self._users - 1)
            thread = self._thread
            if self._users or thread is None:
                return
            self._stopping.set()
            thread.join()
            self._thread = None
        self.flush()

    def _run(self) -> None:
        stopping = self._stopping
        while not stopping.wait(self.interval):
            self.flush()
        self.flush()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:  # a non-blocking stderr that is full: wait until it drains
                select.select([], [self.fd], [], 1.0)
                continue
            except InterruptedError:
                continue
            except OSError:  # stderr is gone: there is nowhere left to report it
                return
            view = view[written:]

    def _after_fork(self) -> None:
        """In a forked child the thread does not exist: start afresh (the parent writes what
        it had pending)."""
        self._pending = collections.deque()
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._thread = None
        self._users = 0


class WriterHandler(logging.Handler):
    """The `logging` handler of every logger: a record formatted, then handed to the writer."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
        except Exception:
            self.handleError(record)
            return
        self.writer.put(line)
        if record.levelno >= logging.ERROR:  # never held back: the process may be about to die
            self.writer.flush()


LOG_WRITER = LineWriter(2)  # stderr, by descriptor: the process's log stream wherever it points
atexit.register(LOG_WRITER.flush)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=LOG_WRITER._after_fork)


def configure_logging(settings: Settings) -> None:
    use_json = settings.log_format == "json" or (settings.log_format == "auto" and settings.is_production)
    LOG_WRITER.flush()  # lines pending keep the format they were logged in
    access = logging.getLevelName(settings.log_level) <= logging.INFO
    LOG_WRITER.render = AccessRenderer(use_json=use_json, access=access)
    handler = WriterHandler(LOG_WRITER)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
    # One access line per request comes from our middleware, without query strings. Not
    # propagating as well: uvicorn formats its own line whenever the logger has a handler
    # anywhere up the tree (`hasHandlers()`), even a disabled logger.
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.disabled = True
    uvicorn_access.propagate = False


@contextlib.asynccontextmanager
async def log_writer(_: object) -> AsyncIterator[None]:
    """Lifespan: the writer's thread runs while the app serves; what is pending when it stops
    (requests that were in flight at shutdown included) is written before the process exits."""
    LOG_WRITER.start()
    try:
        yield
    finally:
        LOG_WRITER.stop()
