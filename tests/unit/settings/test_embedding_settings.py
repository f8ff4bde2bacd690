"""The embedding settings block: defaults, parsing, and an `openai` embedder that names its endpoint."""

from __future__ import annotations

import pytest

from memanto_server.settings import Settings, SettingsError

SECRET = {"MEMANTO_SECRET_KEY": "s" * 40}


def test_defaults_run_the_bundled_model_with_the_worker_in_the_process() -> None:
    settings = Settings.from_env(SECRET)
    assert settings.embedder == "local"
    assert settings.embedding_model_dir == ""
    assert settings.embedding_threads == 1
    assert settings.embedding_worker is True
    assert settings.embedding_batch_size == 32


def test_values_are_read() -> None:
    settings = Settings.from_env(
        {
            **SECRET,
            "MEMANTO_EMBEDDER": "OpenAI",
            "MEMANTO_EMBEDDING_URL": "http://ollama:11434/v1",
            "MEMANTO_EMBEDDING_MODEL": "nomic-embed-text",
            "MEMANTO_EMBEDDING_DIMENSION": "768",
            "MEMANTO_EMBEDDING_WORKER": "false",
            "MEMANTO_EMBEDDING_RETRIES": "0",
        }
    )
    assert (settings.embedder, settings.embedding_dimension) == ("openai", 768)
    assert settings.embedding_worker is False
    assert settings.embedding_retries == 0


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MEMANTO_EMBEDDER": "openai"}, "MEMANTO_EMBEDDING_URL must be an http"),
        ({"MEMANTO_EMBEDDER": "openai", "MEMANTO_EMBEDDING_URL": "http://x/v1"}, "MEMANTO_EMBEDDING_MODEL must name"),
        ({"MEMANTO_EMBEDDER": "torch"}, "MEMANTO_EMBEDDER"),
        ({"MEMANTO_EMBEDDING_BATCH_SIZE": "0"}, "MEMANTO_EMBEDDING_BATCH_SIZE"),
        ({"MEMANTO_EMBEDDING_THREADS": "100"}, "MEMANTO_EMBEDDING_THREADS"),
    ],
)
def test_a_bad_embedding_setting_names_its_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**SECRET, **environ})
