# Two commands: `make lab` (install, then JupyterLab on the tour) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# OPEN_BROWSER=0 serves JupyterLab without opening a browser (headless machines).
OPEN_BROWSER ?= 1
PORT ?= 8888
PYTEST_ARGS ?=

.PHONY: install lab test unit notebooks browser lint chromium bench bench-browser train clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/00_tour.ipynb --port=$(PORT) \
		$(if $(filter 0,$(OPEN_BROWSER)),--no-browser,) \
		$(if $(filter 0,$(shell id -u)),--allow-root,)

# Debian's chromium drives the real-browser test (Playwright with executable_path).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

lint: $(STAMP)
	$(PY) -m ruff check cnnwidgets tests benchmarks scripts

unit: $(STAMP)
	$(PY) -m pytest tests --ignore=tests/browser -q $(PYTEST_ARGS)

notebooks: $(STAMP)
	$(PY) -m pytest --nbval notebooks -q -p no:randomly $(PYTEST_ARGS)

browser: $(STAMP) chromium
	$(PY) -m pytest tests/browser -q $(PYTEST_ARGS)

# The whole suite: lint, unit tests, notebooks under nbval, the browser test.
test: $(STAMP) chromium lint
	$(PY) -m pytest tests --nbval notebooks -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run.py

# Key press to picture on screen in JupyterLab + headless chromium (not a test).
bench-browser: $(STAMP) chromium
	$(PY) benchmarks/browser_latency.py $(BENCH_ARGS)

train: $(STAMP)
	$(PY) scripts/train_demo_models.py

clean:
	rm -rf $(VENV) build *.egg-info
