# The two set-up commands: `make demo` (the main job) and `make test` (the tests); both install first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
ALLENNLP := $(BIN)/allennlp

.PHONY: install demo test lint benchmark clean

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

benchmark: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf runs
