"""Recall and answer quality on the data set of bench/quality/data (7 agents).

    python -m bench.quality.run [--modes hybrid,text,semantic] [--write]

Starts one server (`memanto-server serve`, one worker, the default embedder: the bundled
local model, embedding in-process) on a database of its own (`memanto_bench_quality`) on
a throwaway Postgres with pgvector (or the server `MEMANTO_BENCH_POSTGRES_URL` names);
stores every agent's memories in batches of 8 in the order of the data set (so a
knowledge update is stored after the fact it replaces, sometimes in the same batch);
waits until every memory is embedded; then asks every question with `recall` (limit 10)
in each mode and with `answer`. Prints Recall@5, MRR and the other figures of each mode,
and reciprocal rank fusion of the text and semantic lists beside them, for the questions
the constants were tuned on and, apart, for the held-out ones (`heldout` in the data); `--write` puts
them in docs/benchmarks.md between the markers of its quality section and the raw
outcomes in bench/results/quality.json.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.common import ROOT, create_key, drop_database, fresh_database, server
from bench.quality.metrics import Agent, Outcome, dump, load, rrf, summarise
from memanto_server.memories.service import NO_ANSWER

DB_NAME = "memanto_bench_quality"
BATCH = 8
API = "/api/v2"
BEGIN, END = "<!-- quality:begin -->", "<!-- quality:end -->"
# Whether some memory still waits for its embedding.
UNEMBEDDED = "SELECT EXISTS (SELECT 1 FROM memories WHERE embedding IS NULL)"
BACKLOG = re.compile(r"^memanto_embedding_backlog(?:\{[^}]*\})?\s+([0-9.e+]+)$", re.MULTILINE)


async def store(client: httpx.AsyncClient, key: str, agent: Agent, suffix: str) -> tuple[str, dict[str, str]]:
    """Activate the agent and store its memories; the session token and each memory's id."""
    agent_id = f"{agent.agent_id}-{suffix}"
    activated = await client.post(f"{API}/agents/{agent_id}/activate", headers={"Authorization": f"Bearer {key}"})
    activated.raise_for_status()
    token = activated.json()["session_token"]
    ids: dict[str, str] = {}
    for start in range(0, len(agent.memories), BATCH):
        chunk = agent.memories[start : start + BATCH]
        items = [{"content": m.content, "type": m.type, **({"title": m.title} if m.title else {})} for m in chunk]
        response = await client.post(
            f"{API}/agents/{agent_id}/batch-remember", json={"memories": items}, headers={"X-Session-Token": token}
        )
        response.raise_for_status()
        ids.update(zip((m.id for m in chunk), response.json()["memory_ids"], strict=True))
    return token, ids


async def wait_embedded(client: httpx.AsyncClient, url: str, timeout: float = 300) -> bool:
    """Until every memory has its embedding; False when the server has no embedder. Counted
    in the database: the backlog metric is refreshed every few seconds, and read before its
    first refresh it says 0 while nothing is embedded yet."""
    if BACKLOG.search((await client.get("/metrics")).text) is None:
        return False
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(url)
    try:
        while time.monotonic() < deadline:
            if not await conn.fetchval(UNEMBEDDED):
                return True
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    raise TimeoutError("the embedding backlog did not drain")


async def ask(
    client: httpx.AsyncClient, agent: Agent, agent_id: str, token: str, ids: dict[str, str], modes: list[str]
) -> dict[str, dict[tuple[str, int], Outcome]]:
    keys = {memory_id: key for key, memory_id in ids.items()}
    headers = {"X-Session-Token": token}
    outcomes: dict[str, dict[tuple[str, int], Outcome]] = {mode: {} for mode in modes}
    for index, question in enumerate(agent.questions):
        for mode in modes:
            response = await client.post(
                f"{API}/agents/{agent_id}/recall",
                json={"query": question.q, "limit": 10, "mode": mode},
                headers=headers,
            )
            response.raise_for_status()
            ranked = [keys[m["memory_id"]] for m in response.json()["memories"]]
            answer = None
            if mode == modes[0]:
                said = await client.post(
                    f"{API}/agents/{agent_id}/answer", json={"question": question.q}, headers=headers
                )
                said.raise_for_status()
                answer = said.json()
            outcomes[mode][(agent.agent_id, index)] = Outcome(
                ranked=ranked,
                answer=answer["answer"] if answer else None,
                confidence=answer.get("confidence") if answer else None,
                abstained=(answer["answer"] == NO_ANSWER) if answer else None,
            )
    return outcomes


def fused(outcomes: dict[str, dict[tuple[str, int], Outcome]]) -> dict[tuple[str, int], Outcome]:
    text, semantic = outcomes["text"], outcomes["semantic"]
    return {key: Outcome(ranked=rrf([text[key].ranked, semantic[key].ranked])) for key in text}


def table(summaries: dict[str, dict[str, Any]]) -> str:
    rows = [
        ("Recall@5, all answerable questions", "recall_at_5_all", "questions_all"),
        (
            "Recall@5, questions sharing no content word with their memory",
            "recall_at_5_no_shared_word",
            "questions_no_shared_word",
        ),
        ("Recall@5, questions sharing a word", "recall_at_5_shared_word", "questions_shared_word"),
        ("Recall@5, non-Latin scripts", "recall_at_5_non_latin", "questions_non_latin"),
        ("Recall@5, misspelled questions", "recall_at_5_typo", "questions_typo"),
        ("MRR (first right memory, of 10)", "mrr", "questions_all"),
        ("later fact first (knowledge updates)", "later_fact_first", "knowledge_updates"),
        ("answer contains the gold fact", "answer_contains_fact", "questions_all"),
        ("answer abstains (questions with no answer)", "answer_abstains_without_answer", "questions_without_answer"),
        ("answer abstains wrongly (answerable questions)", "answer_abstains_wrongly", "questions_all"),
    ]
    names = list(summaries)
    lines = ["| figure | n | " + " | ".join(names) + " |", "| --- | ---: | " + " | ".join("---:" for _ in names) + " |"]
    for label, key, count in rows:
        first = summaries[names[0]]
        cells = [("" if summaries[n].get(key) is None else f"{summaries[n][key]:.2f}") for n in names]
        lines.append(f"| {label} | {first.get(count, '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_section(markdown: str, path: Path = ROOT / "docs" / "benchmarks.md") -> None:
    text = path.read_text()
    section = f"{BEGIN}\n{markdown}\n{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


async def measure(
    agents: list[Agent], modes: list[str], *, keep: bool
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, dict[tuple[str, int], Outcome]], float]:
    """Store every agent's memories in a fresh database, ask every question; the figures of
    each mode, on the questions the constants were tuned on and on the held-out ones."""
    url = await fresh_database(DB_NAME)
    try:
        conn = await asyncpg.connect(url)
        try:
            _, key = await create_key(conn)
        finally:
            await conn.close()
        suffix = secrets.token_hex(3)
        outcomes: dict[str, dict[tuple[str, int], Outcome]] = {mode: {} for mode in modes}
        started = time.perf_counter()
        with server(url) as base:
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                stored = [await store(client, key, agent, suffix) for agent in agents]
                embedded = await wait_embedded(client, url)
                if not embedded:
                    modes = [m for m in modes if m != "semantic"]
                for agent, (token, ids) in zip(agents, stored, strict=True):
                    found = await ask(client, agent, f"{agent.agent_id}-{suffix}", token, ids, modes)
                    for mode in modes:
                        outcomes[mode].update(found[mode])
        outcomes = {mode: outcomes[mode] for mode in modes}
        if "text" in outcomes and "semantic" in outcomes:
            outcomes["rrf(text, semantic)"] = fused(outcomes)
        summaries = {mode: summarise(agents, found) for mode, found in outcomes.items()}
        heldout = {mode: summarise(agents, found, heldout=True) for mode, found in outcomes.items()}
        elapsed = time.perf_counter() - started
    finally:
        if not keep:
            await drop_database(DB_NAME)
    return summaries, heldout, outcomes, elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="hybrid,text,semantic")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md and bench/results")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    modes = args.modes.split(",")
    agents = load()
    summaries, heldout, outcomes, elapsed = await measure(agents, modes, keep=args.keep)
    tuned = sum(1 for a in agents for q in a.questions if not q.heldout)
    held = sum(1 for a in agents for q in a.questions if q.heldout)
    held_unanswerable = sum(1 for a in agents for q in a.questions if q.heldout and not q.gold)
    report = table(summaries)
    heldout_report = table(heldout)
    print(report)
    print(f"\nheld-out questions ({held}):\n{heldout_report}")
    print(f"({tuned + held} questions over {len(agents)} agents in {elapsed:.0f} s)")
    if args.write:
        dump(
            {mode: {f"{a}#{i}": o.ranked for (a, i), o in found.items()} for mode, found in outcomes.items()},
            ROOT / "bench" / "results" / "quality.json",
        )
        write_section(
            "## Recall and answer quality (`make bench-quality`)\n\n"
            f"{tuned} questions over {len(agents)} agents of bench/quality/data "
            f"({sum(len(a.memories) for a in agents)} memories), asked of one server with recall `limit` 10; the "
            "answer figures are those of `answer` (it searches as hybrid recall does). `rrf` fuses the text and "
            "semantic lists by reciprocal rank (k = 60), for comparison with the service's own fusion. The "
            "ranking's and the answer's constants (semantic floor and full similarity, text weight, the "
            "knowledge-update rule, the answer floor and weights) were chosen on these questions, so these "
            "figures flatter them. The second table is of "
            f"{held} held-out questions over the same memories ({held_unanswerable} "
            "with no answer, the rest paraphrases that have one; `heldout` in the data), written before the "
            "answer's abstention rules were tuned and never looked at while tuning them: how those choices "
            "carry over. Abstention is the known weak spot. `answer`'s confidence asks whether a sentence "
            "covers what the question asks and not only whom it is about: the meaning of the part of the "
            "question the sentence does not hold word for word (names weigh half); none for a sentence "
            'without the number or time an English question opening with "how many/much/long" or "when" '
            "asks for; half for a sentence that the whole question is no closer to in meaning than the "
            "question's own words it holds are. But with the bundled English bi-encoder (all-MiniLM-L6-v2), a "
            "paraphrase that answers a question and a memory on its subject that does not answer it are "
            "alike in cosine (both 0.2 to 0.6 here): no threshold or combination of these signals tried "
            "(word-level similarity of the question's missing words, how far the nearest memory stands "
            "out from the next ones, a logistic fit of them all) separates most of the unanswerable "
            "questions (a detail absent from a stored subject) from the answerable ones that share no "
            "word with their memory without losing right answers one for one. Reaching the target needs "
            "a model that reads the question and the sentence together (a cross-encoder or a reader).\n\n"
            + report
            + f"\n\nHeld-out questions ({held}):\n\n"
            + heldout_report
        )


if __name__ == "__main__":
    asyncio.run(main())
