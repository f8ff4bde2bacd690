# Memanto server. `make run` serves a development instance; `make test` runs the suite.
# Both create .venv and install the project on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run migrate key test fuzz lint format clean bench bench-memory bench-quality loadtest install-bench

# Packages are installed by uv (pinned in constraints.txt; the venv's pip installs it): about 25 s
# where pip takes a minute. It compiles bytecode at install, as pip does (the suite makes warnings
# errors, and some packages warn when compiled at import). Where uv cannot be had, pip installs.
INSTALL = $$(if [ -x $(BIN)/uv ]; then echo $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python; \
	else echo $(BIN)/python -m pip install --quiet --disable-pip-version-check; fi)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	-$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt uv
	$(INSTALL) -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Without MEMANTO_DATABASE_URL these use a project-local Postgres with pgvector (data kept in
# .memanto-dev/postgres, started for the command and stopped after it, or reused while running);
# with it, that server. Redis is expected at MEMANTO_REDIS_URL (default 127.0.0.1:6379).
WITH_PG := $(BIN)/memanto-server local-postgres --

migrate: install
	$(WITH_PG) $(BIN)/memanto-server migrate

key: install
	$(WITH_PG) $(BIN)/memanto-server keys dev

run: install
	$(WITH_PG) sh -c '$(BIN)/memanto-server migrate && $(BIN)/memanto-server keys dev && \
		exec $(BIN)/memanto-server serve --host $(HOST) --port $(PORT)'

# The suite in TEST_WORKERS processes (pytest-xdist), a test file to a worker: a file's
# module-scoped servers start once. Most tests wait on servers, sockets and timeouts, so twice as
# many workers as cores keeps both busy. `make test TEST_WORKERS=0` runs in one process.
# PYTHONDONTWRITEBYTECODE is unset for the run: without cached bytecode every worker compiles
# (and rewrites the asserts of) every test module, and every server the tests start compiles
# the package, again.
TEST_WORKERS ?= 4
test: install
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# A long schemathesis run against a real server (make test runs a short one): every phase,
# FUZZ_EXAMPLES cases per route and phase, fuzzing repeated until FUZZ_TIME seconds are spent.
# Prints schemathesis' summary (cases, failures by check). FUZZ_SEED to vary the cases.
FUZZ_EXAMPLES ?= 100
FUZZ_TIME     ?= 180
FUZZ_SEED     ?= 20261201
fuzz: install
	MEMANTO_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) MEMANTO_FUZZ_MAX_TIME=$(FUZZ_TIME) MEMANTO_FUZZ_SEED=$(FUZZ_SEED) \
	MEMANTO_FUZZ_PHASES=examples,coverage,fuzzing,stateful \
		$(BIN)/pytest -q -s -p no:cacheprovider tests/integration/ops/test_schemathesis.py

# Code only: this ruff also formats Python blocks inside Markdown, which docs may lay out by hand.
LINTED := memanto_server tests bench

# No module of the package over MAX_MODULE_LINES lines: a module that grows past that is two modules.
MAX_MODULE_LINES := 600

lint: install
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	@find memanto_server -name '*.py' -exec wc -l {} + \
		| awk '$$2 != "total" && $$1 > $(MAX_MODULE_LINES) {print "over $(MAX_MODULE_LINES) lines: " $$2 " (" $$1 ")"; bad = 1} END {exit bad}'

format: install
	$(BIN)/ruff check --fix $(LINTED)
	$(BIN)/ruff format $(LINTED)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

# Memory benchmarks (not part of `make test`): recall at 1k vs 1M memories, batch vs single writes.
bench-memory: install
	$(BIN)/python -m bench.batch_vs_single
	$(BIN)/python -m bench.recall_scale

# Recall and answer quality (not part of `make test`): the data set of bench/quality/data asked of a
# real server in every recall mode; writes the quality section of docs/benchmarks.md and bench/results/quality.json.
bench-quality: install
	$(BIN)/python -m bench.quality.run --write $(BENCH_ARGS)

# Throughput and latency (not part of `make test`): wrk against the hot routes in the production
# configuration (JSON access log, metrics, request ids: the headline) and with logging off (the
# reference) in the same run, with the /health/live floor, a Litestar server-side-session app,
# GET /session/current with 256 connections and paced runs at half of saturation, Redis memory per
# live session and current/activate throughput with 100,000 live sessions against 10 in both
# configurations (bench.redis_memory, on a private redis-server; about 6 min more), redis-benchmark
# and pgbench measured in the same run; writes its part of docs/benchmarks.md. Needs wrk, taskset,
# redis-server, redis-benchmark and pgbench (Debian: apt-get install wrk util-linux redis-server
# redis-tools postgresql-client). bench/README.md says how to read every column.
# BENCH_ARGS="--duration 5 --runs 1", "--sessions 20000", "--skip-sessions" or "--configs production".
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Load scenario (Locust, headless, bounded): the documented agent workflow at scale.
#   MEMANTO_API_KEY=mk_... make loadtest URL=http://127.0.0.1:8000 USERS=50 DURATION=60s
# Prints Locust's summary and writes bench/results/loadtest_{stats,failures,exceptions,stats_history}.csv.
URL      ?= http://127.0.0.1:8000
USERS    ?= 20
DURATION ?= 30s
SPAWN    ?= $(USERS)
BENCH_STAMP := $(VENV)/.installed-bench-stamp

$(BENCH_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(INSTALL) -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

install-bench: $(BENCH_STAMP)

loadtest: install-bench
	@test -n "$$MEMANTO_API_KEY" || { echo "set MEMANTO_API_KEY to an owner's API key (memanto-server keys ...)"; exit 2; }
	mkdir -p bench/results
	$(BIN)/locust -f bench/locustfile.py --headless --host $(URL) --users $(USERS) --spawn-rate $(SPAWN) \
		--run-time $(DURATION) --stop-timeout 10 --only-summary --csv bench/results/loadtest
