# Build a wheel-only virtualenv, then copy it into a slim image without build tools.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml constraints.txt README.md ./
COPY app ./app
RUN /opt/venv/bin/pip install --no-cache-dir -c constraints.txt .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /srv memanto
COPY --from=build /opt/venv /opt/venv
COPY migrations /srv/migrations
ENV PATH=/opt/venv/bin:$PATH \
    MEMANTO_MIGRATIONS_DIR=/srv/migrations \
    PYTHONUNBUFFERED=1
WORKDIR /srv
USER memanto
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2)"
ENTRYPOINT ["memanto-server"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
