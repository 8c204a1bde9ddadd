# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the tests).
# Both create the Python 3.11 environment in .venv on first use.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast extension bench bench-corpus clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11, as bpy 4.5 requires)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: its CPU build; an unpinned torch would pull a multi-GB CUDA build
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[backend,dev,ray,colmap]"
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(VENV)/bin/groupedit demo --out demo_output

test: venv
	$(PY) -m pytest -q

# the edit-test loop: everything but the tests marked slow (CI and `make test` run them all)
test-fast: venv
	$(PY) -m pytest -q -m "not slow"

extension: venv
	$(PY) tools/build_extension.py

bench: venv
	$(PY) benchmarks/capture.py
	$(PY) benchmarks/server.py
	$(PY) benchmarks/bake.py

bench-corpus: venv  # the restyle on every corpus asset at full size (about an hour on 2 cores)
	$(PY) benchmarks/corpus.py

clean:
	rm -rf build dist demo_output
