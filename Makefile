# Two commands: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv on first use. The torch pin avoids pulling a CUDA build on CPU machines;
# override it with `make test TORCH="torch==X.Y.Z"` (or TORCH=torch to take whatever is newest).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-all bench lint clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,video,train,app]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/diffusers-video demo

# Two pytest-xdist workers, one per core, each with one thread (tests/conftest.py); a file's tests share a worker,
# so module-scoped fixtures are built once.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

# Everything, the tests marked slow included (minutes more).
test-all: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile --runslow $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_unet3d.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks conversion_scripts

clean:
	rm -rf $(VENV) build dist src/*.egg-info
