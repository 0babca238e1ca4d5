# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the tests).
# Each creates .venv when it is missing: torch 2.13.0 (CPU wheel) first, then the package with its pins.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.lengthrl-installed
export PYTHONHASHSEED := 0

.PHONY: venv test demo audit bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

demo: $(STAMP)
	$(VENV)/bin/lengthrl demo --out runs/demo

audit: $(STAMP)
	$(VENV)/bin/lengthrl audit --out runs/audit

bench: $(STAMP)
	PYTHONPATH=src:. $(PY) -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf runs .pytest_cache
