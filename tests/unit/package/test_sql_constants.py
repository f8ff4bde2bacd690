"""Every long SQL constant of the package says what it is for and which parameter is which.

A module-level constant whose value is a SQL statement of several lines is preceded by a comment
(its purpose, in a line or more) and, when the statement takes parameters, that comment names
them (`$1 owner, …`; owner and agent, `$1` and `$2` of every per-agent statement, may go
unsaid), so a reader does not count placeholders.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[3] / "memanto_server"
SQL_START = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|ALTER|DROP|LOCK)\b", re.IGNORECASE)
PARAMETER = re.compile(r"\$\d")
LONG = 4  # lines of the statement from which it needs its comment


def sql_constants() -> list[tuple[str, int, str, str]]:
    """(module, line, name, statement) of every module-level SQL constant of several lines."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
                continue
            target, value = node.targets[0], node.value
            if not (isinstance(target, ast.Name) and target.id.isupper()):
                continue
            if isinstance(value, ast.Constant) and isinstance(value.value, str) and SQL_START.match(value.value):
                statement = value.value.strip()
                if statement.count("\n") + 1 >= LONG:
                    found.append((str(path.relative_to(PACKAGE.parent)), node.lineno, target.id, statement))
    return found


def comment_above(path: str, line: int) -> str:
    lines = (PACKAGE.parent / path).read_text().splitlines()[: line - 1]
    comment: list[str] = []
    for text in reversed(lines):
        if not text.startswith("#"):
            break
        comment.insert(0, text.lstrip("# "))
    return " ".join(comment)


def test_the_package_has_long_sql_constants_to_check() -> None:
    assert len(sql_constants()) > 20


@pytest.mark.parametrize(("path", "line", "name", "statement"), sql_constants(), ids=lambda v: str(v)[:40])
def test_a_long_sql_constant_says_what_it_is_for_and_names_its_parameters(
    path: str, line: int, name: str, statement: str
) -> None:
    comment = comment_above(path, line)
    assert comment, f"{path}:{line} {name} has no comment saying what it is for"
    if PARAMETER.search(statement):
        assert PARAMETER.search(comment), f"{path}:{line} {name}: the comment names none of its parameters"
