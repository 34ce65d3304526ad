# One command builds the book, one runs the tests; both set up .venv first.
#   make book    -> _build/html/index.html
#   make test    -> unit tests, pytest --nbval over book/**/*.ipynb, the book
#                   build (warnings are errors), then the browser check of
#                   every built page (make browser); each step prints its time

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
# A CPU build of torch, installed before anything else so that no open
# `torch>=...` range pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

NOTEBOOKS = $(shell find book -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' 2>/dev/null)

.PHONY: all venv .venv test unit nbval book browser clean distclean

all: test

# `make: <step> took N s` after each step of `make test`, failed or not.
T0 = t0=$$(date +%s)
T1 = echo "make: $@ took $$(( $$(date +%s) - t0 )) s"

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
	$(PIP) install -e .
	touch $@

test: unit nbval book browser

# pytest exits 5 when it collects no tests: not a failure here (e.g. while
# tests/ is still empty); every other non-zero exit fails the target.
unit: $(STAMP)
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

clean:
	rm -rf _build .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} + \
	       -o -name .ipynb_checkpoints -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
