# The two commands of the README:  `make run`  and  `make test`.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint system-packages

run: $(STAMP)
	@$(PY) -m portal.runtime.launcher

test: $(STAMP) system-packages
	@$(PY) -m pytest

lint: $(STAMP)
	@$(VENV)/bin/ruff check .

# Reinstalls only when the dependency list changes.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "portal: $(PYTHON) is not installed (Debian: apt-get install python3 python3-venv)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "portal: Python 3.11 or newer is needed"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "portal: cannot create a virtual environment (Debian: apt-get install python3-venv)"; exit 1; }
	@echo "Installing Python dependencies into $(VENV) …"
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# The browser tests drive Debian's Chromium (Playwright's own browser download is not used).
system-packages:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's chromium for the browser tests …"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "portal: the browser tests need Debian's chromium: sudo apt-get install chromium"; exit 1; \
	  fi; }
