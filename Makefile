# Two entry points for a fresh machine:
#   make demo   -> the main job: `manifold-ae verify` + a quick image training run on the built-in data
#   make test   -> the test suite (what CI runs)
# Both create .venv and install what they need. GPU users: install your CUDA build of torch into .venv
# first (or pass TORCH_SPEC=...), e.g. `make venv TORCH_SPEC="torch --index-url <your CUDA wheel index>"`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast lab mutate browser-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# JupyterLab opens the py:percent notebooks as notebooks on a double-click (jupytext's "Jupytext Notebook" as the
# default viewer for Python files), through the settings overrides of the venv's JupyterLab.
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json
$(LAB_OVERRIDES): jupyter/overrides.json $(STAMP)
	mkdir -p $(dir $@)
	cp jupyter/overrides.json $@

venv: $(STAMP) $(LAB_OVERRIDES)

# The course: JupyterLab on notebooks/, where a double-click opens a notebook as a notebook.
lab: $(STAMP) $(LAB_OVERRIDES)
	$(BIN)/jupyter lab --ServerApp.root_dir=notebooks

demo: $(STAMP)
	$(BIN)/manifold-ae demo

# Debian's Chromium for the browser test (never `playwright install`: it downloads a browser). Without root or
# apt the browser test is skipped with its reason; CI runs as root on Debian and installs it.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "note: could not install Debian's chromium; the browser test will be skipped"

test: $(STAMP) $(LAB_OVERRIDES) browser-deps
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser and not ddp"

# The mutation check (docs/testing.md): plants known bugs in scratch copies of the committed tree, one at a time, and
# fails unless the suite catches every one (about 5 minutes).
mutate: $(STAMP)
	$(BIN)/python tests/tools/mutate.py --ref HEAD

clean:
	rm -rf $(VENV) runs reports data-synthetic
