# `make demo` and `make test` set everything up themselves on a fresh machine:
# a virtualenv in .venv with the pinned versions of requirements.lock, then the package (editable).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test docs install clean

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m gankd_ganomaly demo --threads 1 --json runs/demo.json

test: $(VENV)/.installed
	$(PY) -m pytest -q

# API reference (Sphinx autodoc) and guides from docs/; any warning fails the build.
$(VENV)/.docs-installed: $(VENV)/.installed docs/requirements.txt
	$(PY) -m pip install -q -r docs/requirements.txt
	touch $@

docs: $(VENV)/.docs-installed
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "docs built: docs/_build/html/index.html"

clean:
	rm -rf $(VENV) runs
