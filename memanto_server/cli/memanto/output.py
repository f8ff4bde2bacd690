"""What `memanto` prints: results on stdout (lines, tables, or `--json`), notices on stderr.

One way to write each kind of value, so that every command shows it alike: times as
`2026-03-30 16:30:00 UTC`, whole numbers without a decimal point (`6`, not `6.0`),
status words in capitals (`ACTIVE`, `SUPERSEDED`, `EXPIRED`, `DEACTIVATED`).
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from typing import Any

import click
import msgspec
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

TOKEN_SHOWN = 36  # the documented output shows the token's first 36 characters (its JOSE header)


def stdout_console() -> Console:
    """A console on stdout as it is now (the terminal's width, else COLUMNS, else 120 columns:
    piped output is read by people too, `| less`, `| grep`, and is wider than Rich's 80)."""
    return Console(highlight=False, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120)


# stderr: notices, and the import's progress display. A notice printed through this console
# while the progress display is live goes above the bar, never into its line.
err = Console(stderr=True, highlight=False)


# --------------------------------------------------------------------------- streams


def notice(line: str) -> None:
    """One line about what happened on the side (renewals, activations): stderr, never stdout."""
    err.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)


def emit(value: Any) -> None:
    """The raw response as JSON: the Struct as the server sent it."""
    sys.stdout.buffer.write(msgspec.json.encode(value) + b"\n")
    sys.stdout.flush()


def lines(*pairs: tuple[str, Any], width: int | None = None) -> None:
    """`Label:   value` lines, the values in one column (`-` for nothing)."""
    width = width or max(len(label) for label, _ in pairs) + 2
    for label, value in pairs:
        click.echo(f"{label + ':':<{width}}{'-' if value is None or value == '' else value}")


# --------------------------------------------------------------------------- values


def whole(value: float) -> int | float:
    """`6` for 6.0; any other number as it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def number_text(value: float) -> str:
    """`6` for 6.0, `0.8` for 0.8, `0.125` for 0.125: no decimal point a whole number does not have,
    and every digit a fraction has (the shortest text that reads back as the same number)."""
    return str(whole(value))


def hours_text(hours: float) -> str:
    return f"{number_text(hours)}h"


def status_word(word: str) -> str:
    """A status as every line and table shows it: `ACTIVE`, `SUPERSEDED`, `EXPIRED`, `DEACTIVATED`."""
    return word.upper()


def short_token(token: str) -> str:
    """The documented output's shortened token: never the whole of it."""
    return token[: min(TOKEN_SHOWN, len(token) // 2)] + "..."


# --------------------------------------------------------------------------- times


def parse_time(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(value: str | datetime | None) -> str | None:
    """`2026-03-30T16:30:00Z`, as the configuration file keeps times (None when unreadable)."""
    if value is None:
        return None
    try:
        return parse_time(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return None


def is_past(value: str | None) -> bool:
    if not value:
        return False
    try:
        return parse_time(value) <= datetime.now(UTC)
    except ValueError:
        return False


def human_time(value: str | datetime | None) -> str:
    """`2026-03-30 16:30:00 UTC`, as the documented CLI prints times."""
    if value is None:
        return "-"
    try:
        return parse_time(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return str(value)


def short_time(value: str | None) -> str | None:
    """`2026-03-30 16:30` for table cells (the table's title says UTC)."""
    if not value:
        return None
    try:
        return parse_time(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return value


# --------------------------------------------------------------------------- tables


def cell(value: Any) -> Text:
    if value is None or value == "":
        return Text("-")
    if isinstance(value, list):
        return Text(", ".join(str(v) for v in value) or "-")
    if isinstance(value, float):
        return Text(number_text(value))
    return Text(str(value))  # Text, not markup: memory content is shown as written


def new_table(title: str) -> Table:
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)


def memory_text(title: str | None, content: str, memory_id: str) -> Text:
    """A memory's cell: its title in bold, its content as written, its id beneath (dim)."""
    text = Text()
    if title:
        text.append(title, style="bold")
        text.append(": ")
    text.append(content)
    text.append("\n")
    text.append(memory_id, style="dim")
    return text


def print_table(table: Table) -> None:
    stdout_console().print(table)
