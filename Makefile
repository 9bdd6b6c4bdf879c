# Two commands do all the set-up on a fresh machine with only Python and pip:
#   make up     runs the whole system (embedded PostgreSQL and NATS unless DATABASE_URL / NATS_URL)
#   make test   lint, type-check and the full test suite against real servers
#   make test-fast   the unit and service tiers alone (no `up`), in well under a minute
# uv is bootstrapped into .tools/ (pip install uv), then installs the locked dependencies into .venv/.

PYTHON ?= python3
UV := .tools/bin/uv
RUN := $(UV) run --frozen

.PHONY: up test test-fast lint protos bench clean deploy-check

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	touch $@

up: .venv/.synced
	$(RUN) clientvault up $(ARGS)

lint: .venv/.synced
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy .

# pytest exits 5 when a selection (PYTEST_ARGS) matches no test: that is not a failure here.
test: lint
	$(RUN) pytest $(PYTEST_ARGS); code=$$?; if [ $$code -eq 5 ]; then exit 0; else exit $$code; fi

# No whole system: the unit tier and the service tier (each service in-process on a PostgreSQL of its own).
test-fast: .venv/.synced
	$(RUN) pytest tests/unit tests/service -q $(PYTEST_ARGS)

# The deployment files alone (Dockerfile, docker-compose.yml, deploy/k8s): what CI checks, in seconds.
deploy-check: .venv/.synced
	$(RUN) pytest tests/deploy -q

# The venv's python and its protoc-gen-mypy plugin (uv itself lives in .tools/, not on PATH).
protos: .venv/.synced
	PYTHON=.venv/bin/python PATH="$(CURDIR)/.venv/bin:$$PATH" scripts/gen-protos

bench: .venv/.synced
	$(RUN) python bench/users_me.py

clean:
	rm -rf .tools .venv .clientvault
