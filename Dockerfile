# Memanto server image. Two stages: `build` installs the app and its pinned dependencies
# (binary wheels only) into a virtualenv; the final stage copies that virtualenv into a
# fresh slim image, so no compiler, pip cache or source tree ships, and runs it as a
# non-root user. `docker compose up` builds it; `compose.yaml` shows how it is run.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY memanto_server ./memanto_server
# Binary wheels for every dependency (the pins in constraints.txt); the app itself is pure Python.
RUN /opt/venv/bin/pip install --only-binary=:all: -c constraints.txt . \
    && cd / && /opt/venv/bin/python -c "import memanto_server.main, asyncpg, hiredis, uvloop, httptools; \
from memanto_server.embeddings.local import load_local; load_local()"

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 memanto \
    && useradd --system --uid 10001 --gid memanto --home-dir /srv --no-create-home --shell /usr/sbin/nologin memanto
COPY --from=build /opt/venv /opt/venv
# Production by default: a missing MEMANTO_SECRET_KEY stops start-up instead of being generated.
# FORWARDED_ALLOW_IPS: trust X-Forwarded-* from the load balancer (uvicorn reads it); the app
# port is reachable only on the compose network. Override both when running the image elsewhere.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MEMANTO_ENV=production \
    FORWARDED_ALLOW_IPS=*
WORKDIR /srv
USER memanto:memanto
EXPOSE 8000
# uvicorn finishes in-flight requests on SIGTERM (`serve --graceful-timeout`, 30 s by default).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2).status != 200)"]
ENTRYPOINT ["memanto-server"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
