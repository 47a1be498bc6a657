# The two commands of the README:  `make run`  and  `make test`.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint system-packages focus-validator

# `exec`: the launcher replaces the recipe's shell, so make's child is the launcher itself. Make
# forwards SIGTERM to it but not SIGINT/SIGHUP (it counts on the terminal signalling the whole
# group); the launcher watches make for those (devtools/stop_signals.py).
run: $(STAMP) system-packages
	@exec $(PY) -m devtools.launcher

test: $(STAMP) system-packages focus-validator
	@$(PY) -m pytest

# The FinOps FOCUS validator in a venv of its own (it needs Python 3.12, from pyenv); made once,
# again only when its pinned plan changes (devtools/focus_validator.py says why and how).
focus-validator: $(STAMP)
	@$(PY) -m devtools.focus_validator --ensure

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

# Debian packages: nginx is the front proxy (run and test); Chromium drives the browser tests
# (Playwright's own browser download is not used); openssh-server gives the agent the sshd it
# runs for each SSH instance (and the ssh client the tests connect with). Each is checked by a
# command it installs (PACKAGE:COMMAND where the names differ). The packages' own system services
# are stopped: the portal runs nginx itself, with its own configuration, and the agent one sshd
# per instance with its own; the system sshd is also disabled, but only when this installed it
# (a machine that had it before may be reached through it).
run:  DEBIAN_PACKAGES = nginx openssh-server:sshd
test: DEBIAN_PACKAGES = nginx chromium openssh-server:sshd
system-packages:
	@missing=""; \
	for entry in $(DEBIAN_PACKAGES); do \
	  package=$${entry%%:*}; command=$${entry#*:}; \
	  command -v $$command >/dev/null || test -x /usr/sbin/$$command || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages:$$missing …"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	      && { service nginx stop >/dev/null 2>&1 || true; } \
	      && case "$$missing " in *" openssh-server "*) \
	           { service ssh stop; systemctl disable --now ssh; } >/dev/null 2>&1 || true;; esac; \
	  else \
	    echo "portal: please install Debian packages:$$missing (sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi
