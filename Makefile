PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=77" wheel
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/twinplan demo

lint: $(STAMP)
	$(BIN)/ruff check engine formulations solvers instances tests benchmarks

test: $(STAMP)
	$(BIN)/ruff check engine formulations solvers instances tests benchmarks
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV)
