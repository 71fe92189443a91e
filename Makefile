# Two commands: `make lab` (install, then JupyterLab on the tour) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# One stamp per extra: `make lab` installs .[lab] only, `make test` installs .[test].
LAB_STAMP := $(VENV)/.lab-stamp
TEST_STAMP := $(VENV)/.test-stamp
DOCS_STAMP := $(VENV)/.docs-stamp
# OPEN_BROWSER=0 serves JupyterLab without opening a browser (headless machines).
OPEN_BROWSER ?= 1
PORT ?= 8888
PYTEST_ARGS ?=

.PHONY: install lab test test-jax test-torch unit notebooks browser lint chromium docs bench bench-browser train clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(LAB_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[lab]"
	touch $(LAB_STAMP)

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(TEST_STAMP)

$(DOCS_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

install: $(TEST_STAMP)

lab: $(LAB_STAMP)
	$(VENV)/bin/jupyter lab notebooks/00_tour.ipynb --port=$(PORT) \
		$(if $(filter 0,$(OPEN_BROWSER)),--no-browser,) \
		$(if $(filter 0,$(shell id -u)),--allow-root,)

# Debian's chromium drives the real-browser test (Playwright with executable_path).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

lint: $(TEST_STAMP)
	$(PY) -m ruff check cnnwidgets tests benchmarks scripts
	$(VENV)/bin/lint-imports

unit: $(TEST_STAMP)
	$(PY) -m pytest tests --ignore=tests/browser -q $(PYTEST_ARGS)

notebooks: $(TEST_STAMP)
	$(PY) -m pytest --nbval notebooks -q -p no:randomly $(PYTEST_ARGS)

browser: $(TEST_STAMP) chromium
	$(PY) -m pytest tests/browser -q $(PYTEST_ARGS)

# The whole suite: lint, unit tests, notebooks under nbval, the browser test, the docs
# build (tests/test_docs.py), the nbgrader round trip and the Binder resolution check.
# Two workers (pytest-xdist), each taking whole files, so a notebook's cells run in order
# in one kernel: model building and tracing are single-threaded Python, so two cores
# halve the suite's time (21 -> 12 minutes on 2 cores, measured).
TEST_WORKERS ?= 2
test: $(TEST_STAMP) chromium lint
	$(PY) -m pytest tests --nbval notebooks -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The suite on JAX (issue 26): the backend matrix (this process on KERAS_BACKEND=jax,
# the reference maps on TensorFlow in a subprocess, compared array by array; `make
# test` runs the same file the other way round, for JAX and, when installed, torch)
# and every notebook's cells on JAX (nbval-lax: the cells run, their numbers are not
# compared with TensorFlow's; cells tagged tensorflow-recipe, the Keras examples'
# tf.GradientTape code, are skipped).
test-jax: $(TEST_STAMP)
	KERAS_BACKEND=jax JAX_PLATFORMS=cpu CNNWIDGETS_FULL_MATRIX=1 $(PY) -m pytest \
		tests/test_backends.py --nbval-lax notebooks -q -n $(TEST_WORKERS) --dist loadfile \
		-p no:randomly $(PYTEST_ARGS)

# The same matrix on torch: installs the torch extra (the CPU build, pinned; see
# pyproject.toml), then this process on KERAS_BACKEND=torch, TensorFlow in a subprocess.
TORCH_STAMP := $(VENV)/.torch-stamp
$(TORCH_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[test,torch]"
	touch $(TORCH_STAMP)

test-torch: $(TORCH_STAMP)
	KERAS_BACKEND=torch CNNWIDGETS_FULL_MATRIX=1 $(PY) -m pytest tests/test_backends.py -q -p no:randomly $(PYTEST_ARGS)

# The documentation site in site/ (offline; the same build runs in `make test`).
docs: $(DOCS_STAMP)
	$(PY) -m mkdocs build --strict

bench: $(TEST_STAMP)
	$(PY) benchmarks/run.py

# Key press to picture on screen in JupyterLab + headless chromium (not a test).
bench-browser: $(TEST_STAMP) chromium
	$(PY) benchmarks/browser_latency.py $(BENCH_ARGS)

train: $(TEST_STAMP)
	$(PY) scripts/train_demo_models.py

clean:
	rm -rf $(VENV) build site *.egg-info
