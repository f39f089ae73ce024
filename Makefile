# Two commands get a newcomer from clone to results: `make demo` and `make test`.
# Both create the virtualenv in .venv on first use. TORCH picks the torch build: the default pin is the
# CPU wheel (installed before anything else, so no dependency pulls a multi-GB CUDA build); on a GPU
# machine use `make install TORCH=torch`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install browser demo test test-slow learning bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev,robot,alfworld]" "$(TORCH)"
	touch $@

demo: install
	$(PY) jobs/qsft_maze.py --preset tiny --out runs/maze-tiny

# The dashboard's browser test needs Debian's chromium and its driver (installed when apt is usable).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "chromium not installed: the dashboard browser test will be skipped (outside CI)"

test: install browser
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

learning: install
	$(PY) benchmarks/learning.py --task maze --preset tiny

bench: install
	$(PY) benchmarks/collection_throughput.py
	$(PY) benchmarks/step_cost.py
	$(PY) benchmarks/eval_scaling.py

lint: install
	$(PY) -m ruff check pipeline envs jobs tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
