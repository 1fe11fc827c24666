# Quick start: `make demo` (the main job on the embedded toy model) and `make test` (all tests).
# Both set themselves up: a virtual environment in .venv with the CPU build of torch.
# (GPU users install with install/install.py, which picks the right torch build.)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test lint format setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "dragfu needs Python >= 3.10 (PYTHON=$(PYTHON))")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dragfu demo --out-dir out/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check engine tests bench install
	$(BIN)/ruff format --check engine tests bench install
	$(BIN)/vermin -q --no-tips --violations -t=2.7- -t=3.8- plugin

format: $(STAMP)
	$(BIN)/ruff check --fix engine tests bench install
	$(BIN)/ruff format engine tests bench install

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
