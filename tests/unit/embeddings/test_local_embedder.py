"""The local ONNX embedder: the bundled model, its int8 MatMuls, model folders, prefixes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from memanto_server.embeddings.base import EmbedderError
from memanto_server.embeddings.factory import open_embedder
from memanto_server.embeddings.local import OnnxEmbedder, bundled_model, int8_matmuls, load_local
from memanto_server.settings import Settings
from tests.helpers.embedders import model_folder


def test_the_bundled_model_embeds_meaning_in_384_unit_length_dimensions() -> None:
    model = load_local()
    assert (model.model_id, model.dimension) == ("all-MiniLM-L6-v2-int8", 384)
    memories = model.embed_sync(
        ["The customer prefers email over phone calls.", "The server deploy happens every Friday at 5pm."]
    )
    query = model.embed_sync(["How should we contact the client?"])[0]
    assert np.allclose(np.linalg.norm(memories, axis=1), 1.0, atol=1e-5)
    assert float(memories[0] @ query) > float(memories[1] @ query) + 0.1


LOAD_AND_EMBED = """
import sys
from memanto_server.embeddings.local import load_local
vector = load_local().embed_sync(["The customer prefers email"])[0]
print("onnx" in sys.modules, *(f"{x:.6f}" for x in vector[:16]))
"""


def test_the_rewritten_model_is_cached_so_a_later_process_loads_it_without_onnx(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}

    def load() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", LOAD_AND_EMBED], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    first, second = load(), load()
    assert first[0] == "True"  # rewritten here, with the onnx package
    assert second[0] == "False"  # read from the cache folder
    assert first[1:] == second[1:]
    assert [p.suffix for p in (tmp_path / "memanto-server").iterdir()] == [".onnx"]  # no partial file left


def test_int8_matmuls_change_the_graph_and_keep_the_vectors() -> None:
    files = bundled_model()
    rewritten, changed = int8_matmuls(files.model.read_bytes())
    assert changed == 36  # every MatMul by int8 weights of the 6 layers
    texts = ["Invoices are due in 30 days", "Maria owns the budget section of the grant proposal"]
    fast = OnnxEmbedder(files, threads=1).embed_sync(texts)

    import onnxruntime

    one_thread = onnxruntime.SessionOptions()  # ONNX Runtime's threads spin: beside other tests, one is faster
    one_thread.intra_op_num_threads = 1
    reference = onnxruntime.InferenceSession(str(files.model), one_thread, providers=["CPUExecutionProvider"])
    tokenizer = load_local()._tokenizer
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    hidden = reference.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
    pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    assert np.all(np.sum(fast * pooled, axis=1) > 0.98)
    assert rewritten != files.model.read_bytes()


def test_a_model_folder_has_its_id_and_prefixes(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "e5-like", "e5-like", query_prefix="query: ", document_prefix="passage: ")
    model = load_local(str(folder))
    assert model.model_id == "e5-like"
    plain = load_local()
    document = asyncio.run(model.embed_documents(["a fact"]))[0]
    assert np.allclose(document, plain.embed_sync(["passage: a fact"])[0], atol=1e-5)
    query = asyncio.run(model.embed_query("a question"))
    assert np.allclose(query, plain.embed_sync(["query: a question"])[0], atol=1e-5)


def test_a_bad_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match=r"has no model\.onnx"):
        load_local(str(tmp_path))
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(EmbedderError, match="cannot load the embedding model"):
        load_local(str(tmp_path))
    (tmp_path / "embedder.json").write_text('{"pooling": "max"}')
    with pytest.raises(EmbedderError, match=r"embedder\.json"):
        load_local(str(tmp_path))


def test_embedding_runs_off_the_event_loop() -> None:
    model = load_local()
    seen: list[str] = []
    original = model._run

    def spy(texts: list[str]) -> np.ndarray:
        seen.append(threading.current_thread().name)
        return original(texts)

    model._run = spy  # type: ignore[method-assign]
    try:
        asyncio.run(model.embed_documents(["one"]))
        asyncio.run(model.embed_query("two"))
    finally:
        del model._run
    assert seen[0].startswith("embed-documents")
    assert seen[1].startswith("embed-queries")


def test_none_turns_recall_by_meaning_off() -> None:
    settings = Settings(secret_key="s" * 40, embedder="none")
    assert asyncio.run(open_embedder(settings)) is None
