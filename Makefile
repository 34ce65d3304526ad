# One command builds the book, one runs the tests; both set up .venv first.
#   make book    -> _build/html/index.html
#   make test    -> unit tests, then pytest --nbval over book/**/*.ipynb

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
# A CPU build of torch, installed before anything else so that no open
# `torch>=...` range pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

NOTEBOOKS = $(shell find book -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' 2>/dev/null)

.PHONY: all venv .venv test unit nbval book clean distclean

all: test book

venv .venv: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever the requirements or the package metadata change.
$(STAMP): requirements.txt pyproject.toml | $(PY)
	$(PIP) install "$(TORCH)"
	$(PIP) install -r requirements.txt
	$(PIP) install -e .
	touch $@

test: unit nbval

# pytest exits 5 when it collects no tests: not a failure here (e.g. while
# tests/ is still empty); every other non-zero exit fails the target.
unit: $(STAMP)
	@rc=0; $(PY) -m pytest tests || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: no unit tests collected in tests/ (pytest exit 5), not a failure"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi

nbval: $(STAMP) unit
ifeq ($(strip $(NOTEBOOKS)),)
	@echo "make: no notebooks under book/, skipping pytest --nbval"
else
	@rc=0; $(PY) -m pytest --nbval --nbval-current-env book || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: no notebook cells collected in book/ (pytest exit 5), not a failure"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi
endif

# --all: rebuild every page, so that warnings from unchanged pages still fail.
book: $(STAMP)
	$(VENV)/bin/jupyter-book build . --all --warningiserror --keep-going

clean:
	rm -rf _build .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} + \
	       -o -name .ipynb_checkpoints -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
