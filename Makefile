# Two commands do all setup on a fresh machine:
#   make run   — venv + install, build missing artifacts (catalog, index, model, Triton repo), serve the demo
#   make test  — venv + install, ruff, the test suite
PY      ?= /usr/bin/python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# The CPU torch wheel lies on disk here; pip looks there first.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: run test lint install proto clean-artifacts

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(FIND_LINKS) -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/rankserve serve --demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

proto: $(STAMP)
	$(BIN)/python -m protos.generate

clean-artifacts:
	rm -rf artifacts
