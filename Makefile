# The two commands a fresh clone needs: `make dev` and `make test` (see README.md).
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY_SRC := core db devstack workflows activities api agent ops worker.py bench testkit tests

.PHONY: dev test setup web browser compose lint typecheck pytest clean-devstack screenshots

setup:  ## uv, the locked environment, and the web assets
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
	uv sync --frozen
	@if [ -f web/package.json ]; then $(MAKE) --no-print-directory web; fi

web:
	cd web && npm ci --no-audit --no-fund && npm run build

dev: setup  ## run the whole call center on this machine until Ctrl-C
	uv run python -m devstack up

lint:
	uv run ruff check $(wildcard $(PY_SRC))
	uv run ruff format --check $(wildcard $(PY_SRC))

typecheck:
	uv run mypy core workflows activities ops testkit
	@if [ -f web/package.json ]; then cd web && npm run typecheck; fi

pytest:
	uv run pytest

screenshots: setup browser  ## docs/screenshots/*.png, taken by the browser tests themselves
	DOCS_SCREENSHOTS=1 uv run pytest tests/web/test_widget.py tests/web/test_dashboard.py \
	  tests/web/test_playback.py tests/web/test_report.py tests/web/test_search.py \
	  tests/web/test_temporal_ui.py -q

browser:  ## Debian's Chromium for the browser tests (Playwright's own download does not work here)
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "browser tests need /usr/bin/chromium: sudo apt-get install -y chromium" >&2; exit 1; fi; \
	fi

compose:  ## validate docker-compose.yml with Debian's docker-compose (no Docker engine needed)
	@if ! command -v docker-compose >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; \
	  else echo "compose validation needs docker-compose: sudo apt-get install -y docker-compose" >&2; exit 1; fi; \
	fi
	@# PAYLOAD_KEYS is required (the stack refuses to start without it) and empty in the
	@# example: a throwaway key stands in, for this check only.
	PAYLOAD_KEYS="check:$$(head -c 32 /dev/zero | base64)" ENV_FILE=.env.example \
	  docker-compose --env-file .env.example config -q

test: setup browser compose lint typecheck pytest  ## set up and run the whole test suite

clean-devstack:  ## forget every call, recording and setting of the local stack
	rm -rf .devstack
