# Two commands: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv on first use. The torch pin avoids pulling a CUDA build on CPU machines;
# override it with `make test TORCH="torch==X.Y.Z"` (or TORCH=torch to take whatever is newest).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test bench lint clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,video,train]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/diffusers-video demo

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_unet3d.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks conversion_scripts

clean:
	rm -rf $(VENV) build dist src/*.egg-info
