"""Logging set-up: one format for the whole process, and credentials never in a line.

The redaction filter sits on the handler, so it covers every logger (ours, Litestar's,
uvicorn's, the drivers') at every level: defence in depth behind the rule that no code
logs a key or token in the first place.
"""

from __future__ import annotations

import logging
import re
import sys
import time

import msgspec

from memanto_server.settings import Settings

# An API key (`mk_…`) or anything shaped like a JWT (three base64url parts, `eyJ…`).
SECRET_PATTERN = re.compile(r"mk_[A-Za-z0-9_-]{8,}|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    return SECRET_PATTERN.sub(REDACTED, text)


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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)
        return redact(msgspec.json.encode(entry).decode())


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}
        line = super().format(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return redact(line)


def configure_logging(settings: Settings) -> None:
    use_json = settings.log_format == "json" or (settings.log_format == "auto" and settings.is_production)
    handler = logging.StreamHandler(sys.stderr)
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
