"""Recall by meaning: embedders (a local ONNX model, an OpenAI-compatible endpoint), the worker
that embeds stored memories, and the vector SQL (KNN, the worker's queue, the recorded model)."""
