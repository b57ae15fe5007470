# Gongkai Publisher — two commands on a fresh Debian 12 machine, as root:
#   make run    set everything up and serve on http://127.0.0.1:8080 (SQLite)
#   make test   install what the tests need and run the whole suite with ruff and mypy
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PUBLISHER := $(VENV)/bin/publisher
CONFIG ?= config.yaml
SAMPLE ?= samples/shangyu-2013-disclosure-report.txt
# the sample page has no title line (its first line is a sentence of the body): its title
SAMPLE_TITLE ?= 上余镇2013年政府信息公开工作年度报告
# Debian packages: Python's venv, PostgreSQL client tools (pg_isready), build tools,
# Kannel (the SMS gateway the sms tests run against; kannel-extras has its fake SMSC),
# WeasyPrint's Pango, CJK fonts and HarfBuzz subsetting (PDF reports), pdftotext (tests),
# Chromium (the browser tests in tests/ui drive it with Playwright), zbar (decodes the QR codes
# of notice-board layouts in tests), newsboat (a feed reader the feed tests run on the feeds)
APT_PACKAGES := python3-venv python3-dev build-essential postgresql-client kannel kannel-extras \
  fonts-noto-cjk libharfbuzz-subset0 libpango-1.0-0 libpangoft2-1.0-0 poppler-utils chromium \
  libzbar0 newsboat

.PHONY: help run test system-deps venv lint typecheck pytest clean messages screenshots

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

system-deps: ## install the Debian packages the project needs (root)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root to install:$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml | system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed ## create the virtualenv and install the project

run: venv ## set up and serve on http://127.0.0.1:8080 with SQLite
	$(PUBLISHER) --config $(CONFIG) key generate
	$(PUBLISHER) --config $(CONFIG) db upgrade
	@if [ -f $(SAMPLE) ]; then $(PUBLISHER) --config $(CONFIG) import $(SAMPLE) --title '$(SAMPLE_TITLE)'; fi
	$(PUBLISHER) --config $(CONFIG) serve

lint: venv ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv ## mypy --strict
	$(VENV)/bin/mypy

pytest: venv ## the test suite
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest ## everything CI runs

messages: venv ## extract the UI strings (locale/messages.pot), update and compile the catalogues
	$(VENV)/bin/pybabel -q extract -F babel.cfg -o locale/messages.pot --no-location --sort-output --omit-header .
	$(VENV)/bin/pybabel -q update -i locale/messages.pot -d locale --ignore-obsolete --no-fuzzy-matching
	$(VENV)/bin/pybabel -q compile -d locale --statistics

screenshots: venv ## screenshots of the main pages into docs/screenshots (Chromium, Playwright)
	PUBLISHER_SCREENSHOTS=docs/screenshots $(VENV)/bin/pytest -q -p no:cacheprovider tests/ui/test_staff_flow.py tests/ui/test_resident_flow.py

clean: ## remove the virtualenv and caches (keeps data/)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
