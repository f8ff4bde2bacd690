"""One typed settings object, read from MEMANTO_* environment variables.

A bad value stops start-up with a message naming the variable; nothing else in
the app reads the environment.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from memanto_server.lib.rates import Rate
from memanto_server.lib.redis_client import ClusterUrl, is_cluster_url, storage_redis_url

ENV_PREFIX = "MEMANTO_"
MIN_SECRET_BYTES = 32

# Upper bounds keep every duration finite (no `inf`, which would overflow later).
Hours = Annotated[float, msgspec.Meta(gt=0, le=87_600)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    env: Literal["development", "production"] = "development"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/memanto"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "memanto:"
    # Signing secret for session tokens. In development a missing one is generated
    # once into `secret_file`; in production it is required.
    secret_key: str = ""
    # Comma-separated secrets that were current before: tokens they signed stay valid.
    previous_secret_keys: tuple[str, ...] = ()
    secret_file: str = ".memanto-dev/secret_key"  # noqa: S105 - a path

    session_default_hours: Hours = 6.0
    session_max_hours: Hours = 24.0
    session_max_total_hours: Hours = 168.0
    extend_max_hours: Hours = 24.0
    # How long an expired session's state stays in Redis for its history to be recorded,
    # and how often each instance looks for expired sessions to record.
    session_retain_seconds: Seconds = 600.0
    sweep_interval_seconds: Seconds = 15.0

    max_body_bytes: PositiveInt = 1_048_576
    api_key_cache_seconds: Seconds = 30.0

    db_pool_min: Annotated[int, msgspec.Meta(ge=0)] = 1
    db_pool_max: PositiveInt = 10
    db_connect_timeout: Seconds = 3.0
    db_acquire_timeout: Seconds = 3.0
    db_statement_timeout: Seconds = 10.0
    redis_timeout: Seconds = 2.0
    redis_max_connections: PositiveInt = 100
    retry_after_seconds: PositiveInt = 2
    health_timeout: Seconds = 1.0

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"

    # Requests per owner to /api/v2, as `COUNT/UNIT` (`600/minute`, `10/second`, `100/5 minutes`),
    # counted in a moving window shared by every instance; empty: no limit.
    rate_limit: str = ""
    # Where the counts live (a redis:// or redis+cluster:// URL); empty: `redis_url`.
    rate_limit_storage_url: str = ""

    # --- Embeddings: recall by meaning (memanto_server/embeddings/) ---
    # `local`: an ONNX model in this process (the bundled one, or `embedding_model_dir`);
    # `openai`: an OpenAI-compatible `POST /v1/embeddings` endpoint (OpenAI, Ollama, vLLM, TEI);
    # `none`: recall by meaning off (full text only).
    embedder: Literal["local", "openai", "none"] = "local"
    # A folder with model.onnx, tokenizer.json and optionally embedder.json (local embedder).
    embedding_model_dir: str = ""
    # ONNX Runtime threads per embedding call: the share of a core the worker may take.
    embedding_threads: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    # The endpoint's base URL (…/v1), model name, key and dimension (0: learnt from one call).
    embedding_url: str = ""
    embedding_model: str = ""
    embedding_api_key: str = ""
    embedding_dimension: Annotated[int, msgspec.Meta(ge=0, le=16_000)] = 0
    # Prefixes some models expect (e5: "query: " and "passage: "), for the endpoint's model.
    embedding_query_prefix: str = ""
    embedding_document_prefix: str = ""
    embedding_timeout: Seconds = 10.0
    embedding_retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 3
    # Memories per worker batch (and per endpoint request); text per memory is cut at max_chars.
    embedding_batch_size: Annotated[int, msgspec.Meta(ge=1, le=256)] = 32
    embedding_max_chars: Annotated[int, msgspec.Meta(ge=100, le=100_000)] = 4000
    # Run the embedding worker in each app process (off: run `memanto-server worker` instead).
    embedding_worker: bool = True
    # The worker wakes on new memories (LISTEN/NOTIFY); it also looks this often, in case.
    embedding_poll_seconds: Seconds = 5.0
    # How often the backlog metric (memanto_embedding_backlog) is refreshed.
    embedding_backlog_seconds: Seconds = 5.0

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def signing_keys(self) -> dict[str, str]:
        """kid → secret; the current secret first."""
        keys = {key_id(self.secret_key): self.secret_key}
        for old in self.previous_secret_keys:
            keys.setdefault(key_id(old), old)
        return keys

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        raw: dict[str, object] = {}
        for name in cls.__struct_fields__:
            value = environ.get(ENV_PREFIX + name.upper())
            if value is None or value == "":
                continue
            if name == "previous_secret_keys":
                raw[name] = [part.strip() for part in value.split(",") if part.strip()]
            elif name in ("env", "log_level", "log_format", "embedder"):
                raw[name] = value.strip().lower() if name != "log_level" else value.strip().upper()
            else:
                raw[name] = value
        try:
            settings = msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise SettingsError(_name_variable(str(exc))) from None
        settings._check()
        if not settings.secret_key:
            if settings.is_production:
                raise SettingsError(
                    f"{ENV_PREFIX}SECRET_KEY is required when {ENV_PREFIX}ENV=production "
                    f"(at least {MIN_SECRET_BYTES} bytes; e.g. `openssl rand -base64 48`)"
                )
            settings = msgspec.structs.replace(settings, secret_key=load_or_create_secret(settings.secret_file))
        return settings

    def _check(self) -> None:
        self._check_secrets()
        self._check_urls()
        self._check_bounds()
        self._check_embedder()

    def _check_secrets(self) -> None:
        for name, value in (
            ("SECRET_KEY", self.secret_key),
            *(("PREVIOUS_SECRET_KEYS", old) for old in self.previous_secret_keys),
        ):
            if value and len(value.encode()) < MIN_SECRET_BYTES:
                raise SettingsError(f"{ENV_PREFIX}{name} must be at least {MIN_SECRET_BYTES} bytes long")

    def _check_urls(self) -> None:
        if not self.database_url.startswith(("postgresql://", "postgres://")):
            raise SettingsError(f"{ENV_PREFIX}DATABASE_URL must be a postgresql:// URL")
        if not is_cluster_url(self.redis_url) and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(
                f"{ENV_PREFIX}REDIS_URL must be a redis://, rediss://, unix:// or redis+cluster://host:port[,…] URL"
            )
        # Each value in the grammar of the code that will read it.
        for name, value, parse in (
            ("REDIS_URL", self.redis_url if is_cluster_url(self.redis_url) else "", ClusterUrl),
            ("RATE_LIMIT", self.rate_limit, Rate.parse),
            ("RATE_LIMIT_STORAGE_URL", self.rate_limit_storage_url, storage_redis_url),
        ):
            try:
                if value:
                    parse(value)
            except ValueError as exc:
                raise SettingsError(f"{ENV_PREFIX}{name}: {exc}") from None

    def _check_embedder(self) -> None:
        if self.embedder != "openai":
            return
        if not self.embedding_url.startswith(("http://", "https://")):
            raise SettingsError(f"{ENV_PREFIX}EMBEDDING_URL must be an http(s):// URL when {ENV_PREFIX}EMBEDDER=openai")
        if not self.embedding_model:
            raise SettingsError(f"{ENV_PREFIX}EMBEDDING_MODEL must name the model when {ENV_PREFIX}EMBEDDER=openai")

    def _check_bounds(self) -> None:
        for smaller, larger in (
            ("session_default_hours", "session_max_hours"),
            ("session_max_hours", "session_max_total_hours"),
            ("db_pool_min", "db_pool_max"),
        ):
            if getattr(self, smaller) > getattr(self, larger):
                raise SettingsError(
                    f"{ENV_PREFIX}{smaller.upper()} ({getattr(self, smaller)}) exceeds "
                    f"{ENV_PREFIX}{larger.upper()} ({getattr(self, larger)})"
                )


def key_id(secret: str) -> str:
    """A stable, non-reversible id for a signing secret (the JWT `kid`)."""
    return hashlib.sha256(b"memanto-kid:" + secret.encode()).hexdigest()[:16]


def _name_variable(message: str) -> str:
    # msgspec says "... - at `$.field`"; users set MEMANTO_FIELD.
    if " - at `$." in message:
        text, _, path = message.rpartition(" - at `$.")
        field = path.rstrip("`").split(".")[0].split("[")[0]
        return f"{ENV_PREFIX}{field.upper()}: {text}"
    return message


def load_or_create_secret(path_str: str) -> str:
    """Read the development signing secret, creating it once if missing.

    Creation is atomic (write a temporary file, then hard-link it into place), so
    several workers starting together agree on one secret.
    """
    path = Path(path_str)
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    secret = path.read_text().strip()
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise SettingsError(f"the secret in {path} is shorter than {MIN_SECRET_BYTES} bytes; delete it")
    return secret
