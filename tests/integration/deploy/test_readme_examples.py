"""The README's curl walk-throughs run as written against a real server, and they show what
they say: every call answers without a problem document, and the paging example pages — its
memories match the query and filters it shows, and the second page continues the first.

The two `sh` blocks are taken from the README itself and run by bash in a folder whose
`.memanto-dev/api_key` holds a new owner's key (the README's first line reads it there);
only the server's address is changed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.owners import OwnerKey

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[3] / "README.md"


def walkthrough_blocks() -> list[str]:
    text = README.read_text()
    start = text.index("## A session from start to end (curl)")
    end = text.index("\n## ", start + 1)
    blocks = re.findall(r"```sh\n(.*?)```", text[start:end], flags=re.DOTALL)
    assert len(blocks) == 2, blocks
    return blocks


def json_documents(output: str) -> list[Any]:
    """The JSON answers the script printed, one after the other (curl adds no newline)."""
    decoder = json.JSONDecoder()
    documents, position = [], 0
    while True:
        while position < len(output) and output[position].isspace():
            position += 1
        if position == len(output):
            return documents
        document, position = decoder.raw_decode(output, position)
        documents.append(document)


def matches_the_query(memory: dict[str, Any]) -> bool:
    text = f"{memory['title'] or ''} {memory['content']}".lower()
    return "billing" in text and memory["type"] in ("fact", "instruction") and "billing" in memory["tags"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_the_readme_walkthroughs_run_and_the_paging_example_pages(
    server_url: str, owner: OwnerKey, tmp_path: Path
) -> None:
    (tmp_path / ".memanto-dev").mkdir()
    (tmp_path / ".memanto-dev" / "api_key").write_text(f"{owner.key}\n")
    script = "set -euo pipefail\n" + "\n".join(walkthrough_blocks())
    script = script.replace("http://127.0.0.1:8000", server_url)
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    documents = json_documents(run.stdout)
    problems = [d for d in documents if isinstance(d, dict) and "code" in d and "status" in d]
    assert problems == [], problems

    pages = [d for d in documents if isinstance(d, dict) and d.get("query") == "billing" and "memories" in d]
    assert len(pages) == 2, pages
    first, second = pages
    assert first["count"] == 2
    assert first["next_cursor"], "the first page says there is more"
    assert second["count"] >= 1
    assert all(matches_the_query(m) for m in first["memories"] + second["memories"])
    first_ids = {m["memory_id"] for m in first["memories"]}
    assert first_ids.isdisjoint(m["memory_id"] for m in second["memories"])
    # Pages are best first: the second continues below the first.
    assert min(m["score"] for m in first["memories"]) >= max(m["score"] for m in second["memories"])
