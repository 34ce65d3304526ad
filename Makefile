# One command builds the book, one runs the tests; both set up .venv first.
#   make book    -> _build/html/index.html
#   make test    -> unit tests, pytest --nbval over book/**/*.ipynb, the book
#                   build (warnings are errors), then the browser check of
#                   every built page (make browser); each step prints its time
# Other machines a reader has:
#   make test-portable -> the notebooks with one thread (a stand-in for another CPU)
#   make compat        -> unit tests and every notebook (nbval-lax) with Colab's
#                         older libraries, in a second venv (.venv-compat)
#   make test-gpu      -> unit tests and every notebook (nbval-lax) on CUDA, in the
#                         Python that has a CUDA build of torch (GPU_PYTHON)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
# A CPU build of torch, installed before anything else so that no open
# `torch>=...` range pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

NOTEBOOKS = $(shell find book -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' 2>/dev/null)

.PHONY: all venv .venv test unit nbval book browser test-portable compat test-gpu clean distclean

all: test

# `make: <step> took N s` after each step of `make test`, failed or not.
T0 = t0=$$(date +%s)
T1 = echo "make: $@ took $$(( $$(date +%s) - t0 )) s"
# The same for one of several steps of a target: $(call T1_STEP,name).
T1_STEP = echo "make: $@ ($(1)) took $$(( $$(date +%s) - t0 )) s"

# Headless Chromium for the browser check (Debian: apt-get install -y
# chromium chromium-driver; .ci/run installs them when missing).
CHROMIUM     ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver
SCREENSHOTS  ?= ci-artifacts/screenshots

venv .venv: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever the requirements or the package metadata change.
$(STAMP): requirements.txt pyproject.toml | $(PY)
	$(PIP) install "$(TORCH)"
	$(PIP) install -r requirements.txt
	$(PIP) install -e ".[book]"
	touch $@

test: unit nbval book browser

# pytest exits 5 when it collects no tests: not a failure here (e.g. while
# tests/ is still empty); every other non-zero exit fails the target.
unit: $(STAMP)
	$(VENV)/bin/ruff check probunet $(NOTEBOOKS)
	@$(T0); rc=0; $(PY) -m pytest tests || rc=$$?; $(T1); \
	if [ $$rc -eq 5 ]; then echo "make: no unit tests collected in tests/ (pytest exit 5), not a failure"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi

nbval: $(STAMP) unit
ifeq ($(strip $(NOTEBOOKS)),)
	@echo "make: no notebooks under book/, skipping pytest --nbval"
else
	@$(T0); rc=0; $(PY) -m pytest --nbval --nbval-current-env book || rc=$$?; $(T1); \
	if [ $$rc -eq 5 ]; then echo "make: no notebook cells collected in book/ (pytest exit 5), not a failure"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi
endif

# --all: rebuild every page, so that warnings from unchanged pages still fail.
book: $(STAMP)
	@$(T0); rc=0; cmd="$(VENV)/bin/jupyter-book build . --all --warningiserror --keep-going"; \
	echo "$$cmd"; $$cmd || rc=$$?; $(T1); exit $$rc

# Open every built page in headless Chromium (tests/browser/check_book.py):
# no JS errors, no failed or external requests, images loaded, math typeset
# by the vendored MathJax, no raw MyST, widgets rendered, Colab links, internal
# links. Full-page screenshots go to $(SCREENSHOTS) (git-ignored).
browser: book
	@for exe in $(CHROMIUM) $(CHROMEDRIVER); do [ -x $$exe ] || { \
	  echo "make: $$exe missing: apt-get install -y chromium chromium-driver (.ci/run does it)"; exit 2; }; done
	@$(T0); rc=0; rm -rf $(SCREENSHOTS); \
	CHROMIUM=$(CHROMIUM) CHROMEDRIVER=$(CHROMEDRIVER) \
	  $(PY) tests/browser/check_book.py _build/html --screenshots $(SCREENSHOTS) \
	    --require-widget book/experiments.html || rc=$$?; \
	$(T1); exit $$rc

# Stored outputs hold only what every machine reproduces; one thread changes
# the last bits of every training run, as another CPU does.
test-portable: $(STAMP)
	@$(T0); rc=0; OMP_NUM_THREADS=1 $(PY) -m pytest --nbval --nbval-current-env book || rc=$$?; $(T1); exit $$rc

# Colab's libraries (tests/colab_versions.txt: older than ours) with torch
# 2.13.0 CPU on this Python. --nbval-lax runs every cell and every hidden
# check without comparing outputs (another library prints other reprs).
# Two pytest-xdist workers of one thread each (--dist loadfile keeps a
# notebook's cells in one kernel): small convolutions gain little from a
# second thread, so two notebooks at once take far less wall time than one
# after another, and one thread is the portable case the hidden checks were
# measured on. COMPAT_WORKERS=0 runs them one after another.
COMPAT_WORKERS ?= 2
XDIST = $(if $(filter 0,$(COMPAT_WORKERS)),,-n $(COMPAT_WORKERS) --dist loadfile)
COMPAT_VENV  := .venv-compat
COMPAT_PY    := $(COMPAT_VENV)/bin/python
COMPAT_STAMP := $(COMPAT_VENV)/.installed

$(COMPAT_STAMP): tests/colab_versions.txt requirements.txt pyproject.toml
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_PY) -m pip install "$(TORCH)"
	$(COMPAT_PY) -m pip install -c tests/colab_versions.txt -e ".[book]" pytest pytest-xdist nbval ipykernel pyyaml
	$(COMPAT_PY) -m pip check
	touch $@

compat: $(COMPAT_STAMP)
	@$(COMPAT_PY) -c "import ipywidgets, matplotlib, numpy, torch; print('make compat: ipywidgets', ipywidgets.__version__, \
	  '| numpy', numpy.__version__, '| matplotlib', matplotlib.__version__, '| torch', torch.__version__)"
	@$(T0); rc=0; OMP_NUM_THREADS=1 $(COMPAT_PY) -m pytest $(XDIST) tests || rc=$$?; \
	$(call T1_STEP,unit tests); [ $$rc -eq 0 ] || exit $$rc
	@$(T0); rc=0; OMP_NUM_THREADS=1 $(COMPAT_PY) -m pytest $(XDIST) --nbval-lax --nbval-current-env book || rc=$$?; \
	$(call T1_STEP,notebooks); exit $$rc

# A GPU machine (a Colab GPU runtime, a workstation): run it with the Python
# whose torch is a CUDA build, e.g. `make test-gpu GPU_PYTHON=python3` on
# Colab. The notebooks pick the GPU themselves (device="auto"); outputs are not
# compared, the hidden checks run. Needs pytest and nbval in that Python.
GPU_PYTHON ?= python3

test-gpu:
	@PYTHONPATH=$(CURDIR) $(GPU_PYTHON) -c "import torch; assert torch.cuda.is_available(), \
	  'make test-gpu: torch.cuda.is_available() is False in $(GPU_PYTHON)'; \
	  print('make test-gpu: torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"
	@$(T0); rc=0; PYTHONPATH=$(CURDIR) $(GPU_PYTHON) -m pytest tests || rc=$$?; \
	$(call T1_STEP,unit tests); [ $$rc -eq 0 ] || exit $$rc
	@$(T0); rc=0; PYTHONPATH=$(CURDIR) $(GPU_PYTHON) -m pytest --nbval-lax --nbval-current-env --durations=0 book || rc=$$?; \
	$(call T1_STEP,notebooks); exit $$rc

clean:
	rm -rf _build .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} + \
	       -o -name .ipynb_checkpoints -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(COMPAT_VENV)
