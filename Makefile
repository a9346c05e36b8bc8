# Wojia: the two commands of the README are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.8
PY := .venv/bin/python
# uv from PATH when present, else the copy pip installs for python3 (run as a module: pip may put
# its script in a folder that is not on PATH).
UV_BIN := $(shell command -v uv 2>/dev/null)
UV = $(if $(UV_BIN),$(UV_BIN),python3 -m uv)
HOST ?= 127.0.0.1
PORT ?= 8000
export UV_PYTHON_DOWNLOADS := never
# Python may cache compiled modules whatever the caller's shell says: without it every process of
# `make run` and of the tests (api, sandboxes as subprocesses, workers) compiles ~1,800 modules again
# (about 9 s of CPU each on this machine's cores).
unexport PYTHONDONTWRITEBYTECODE


.PHONY: run-school-fees
.PHONY: help venv run test test-pg lint check bench wheel fuzz faults system-deps rasa-env rasa-train clean

help:
	@echo "make run    - set up, migrate, seed demo data and serve on http://$(HOST):$(PORT)"
	@echo "make test   - set up and run the whole test suite (SQLite + in-process Redis by default)"
	@echo "make lint   - ruff, mypy, import-linter and the Alembic check"
	@echo "make bench  - benchmarks (figures, not pass/fail)"
	@echo "make wheel  - build the production wheel and check it holds no sandbox"
	@echo "make run-school-fees - the example third-party column (docs/examples/school_fees) beside make run"
	@echo "make fuzz   - schemathesis over every operation as four roles (also part of make test)"

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)" \
	  || python3 -m pip install --quiet --user --break-system-packages "uv==$(UV_VERSION)"
	$(UV) sync --frozen --python 3.11
	@touch $@

venv: .venv/.synced

# Debian packages the tests and benches need: chromium for the finance console's browser test, wrk
# for the HTTP benches.
system-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  echo "installing Debian's chromium (browser tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi
	@# wrk: the load generator of the HTTP benches (bench/_harness.py).
	@if ! command -v wrk >/dev/null 2>&1; then \
	  echo "installing Debian's wrk (HTTP benches)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk >/dev/null; \
	fi
	@# A CJK font, so the browser's screenshots of the Chinese screens show Chinese, not boxes.
	@if ! fc-list :lang=zh 2>/dev/null | grep -q .; then \
	  echo "installing a CJK font (fonts-noto-cjk)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq fonts-noto-cjk >/dev/null; \
	fi

# The assistant's own Python 3.10 environment (outside the work tree, reused across clones),
# and its model, trained only when the NLU data or the catalogue changed.
rasa-env:
	@scripts/rasa-env.sh >/dev/null

rasa-train: rasa-env venv
	@echo "rasa model: $$(scripts/rasa-train.sh)"

# The API serves at once; the assistant joins when its environment and model are ready (built or
# trained in the background by bot/rasa-run.sh when not cached; until then chat answers 503
# bot.starting with Retry-After).
run: venv
	$(PY) -m app_api.wiring.cli db upgrade
	$(PY) -m app_api.wiring.cli seed
	@mkdir -p var
	@echo ""
	@echo "Wojia API on http://$(HOST):$(PORT)  -  docs: http://$(HOST):$(PORT)/docs"
	@echo "assistant (Rasa) on http://127.0.0.1:5005, log in var/rasa.log (ready after its model is trained if needed, and loaded)"
	@echo "example third-party column (docs/examples/school_fees) on https://127.0.0.1:8443, log in var/school_fees.log"
	@WOJIA_BOT_ACTION_URL=http://$(HOST):$(PORT)/api/v1/bot/actions bot/rasa-run.sh > var/rasa.log 2>&1 & \
	  rasa_pid=$$!; \
	  SCHOOL_FEES_ISSUER=http://$(HOST):$(PORT) docs/examples/school_fees/run.sh > var/school_fees.log 2>&1 & \
	  school_fees_pid=$$!; \
	  trap 'kill $$rasa_pid $$school_fees_pid 2>/dev/null' EXIT INT TERM; \
	  WOJIA_PUBLIC_BASE_URL=http://$(HOST):$(PORT) $(PY) -m app_api.wiring.cli serve --host $(HOST) --port $(PORT) --no-migrate

# The example third-party column alone (its own process, docs/examples/school_fees/README.md); `make run`
# starts it too. Its keys come from var/school_fees.env, written by the development seed.
run-school-fees: venv
	SCHOOL_FEES_ISSUER=http://$(HOST):$(PORT) docs/examples/school_fees/run.sh

test: venv system-deps rasa-train
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy app_api columns payments identity miniprogram_bridge bot
	.venv/bin/lint-imports
	$(PY) -m app_api.wiring.cli db check

check: lint test

# Schemathesis over every operation as a resident, a reviewer, an agent and a finance officer
# (also part of `make test`).
fuzz: venv
	$(PY) -m pytest -q tests/fuzz $(PYTEST_ARGS)

# Faults under load (not part of `make test`): its own PostgreSQL and Redis on spare ports, the api,
# worker and scheduler as processes; kills Redis, PostgreSQL, the worker, an api worker; SIGTERM.
faults: venv
	$(PY) -m pytest -p no:cacheprovider --confcutdir=tests/faults -s -v tests/faults $(PYTEST_ARGS)

# The production wheel: built with uv, then checked to hold no protocol sandbox.
wheel: venv
	@rm -rf dist
	$(UV) build --wheel -o dist -q
	$(PY) scripts/check-wheel.py dist/*.whl

# Every bench (each prints its figures, then one table: work, goal, figure, ratio; see bench/report.py).
bench: venv
	$(PY) bench/report.py

clean:
	rm -rf .venv var .pytest_cache .mypy_cache .ruff_cache
