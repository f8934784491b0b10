# make demo: deploy the example app to a local Debian 12 systemd container and show its answer
#            (make demo DEBIAN=13: to a Debian 13 one).
# make test: lint everything, check the docs against the role, and run every Molecule scenario.
# make dist: the collection's tarball in dist/, for ansible-galaxy collection install.
# make bench: figures for deploy, serving (with and without keep-alive, and through nginx), reload, stop and
#             memory, written to docs/benchmarks.md.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# The test hosts' images: Debian 12 and 13, which the role supports, and 11, which it must refuse.
TEST_SUITES := bookworm trixie bullseye
DEBIAN ?= 12
# The scenarios whose plays drive one host at a time use about one core of the two: they run in two
# lanes side by side. Those that drive two hosts at once (validation's plays, lifecycle's two pytest
# workers) keep both cores busy, and run alone (docs/testing.md).
LANE_1 := default cluster
LANE_2 := unix_socket multi_app offline
ALONE := validation lifecycle
SCENARIOS := $(LANE_1) $(LANE_2) $(ALONE)

.PHONY: help venv docker image lint unit molecule test dist bench demo demo-clean clean readme

help:
	@echo "make demo    deploy examples/flask-demo to a local Debian 12 container and show its answer (DEBIAN=13: Debian 13)"
	@echo "make test    lint, doc checks and every Molecule scenario ($(SCENARIOS))"
	@echo "make bench   deploy, serving (keep-alive, through nginx), reload and memory figures into docs/benchmarks.md (about 40 min)"
	@echo "make dist    build the collection (flaskapps.uwsgi) into dist/, for ansible-galaxy collection install"
	@echo "make readme  write the README's variable tables from each role's meta/argument_specs.yml"

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed

docker:
	bash scripts/ensure-docker.sh

# The images are built side by side (debootstrap waits mostly on the mirror), each only if missing.
image: docker
	pids=(); for suite in $(TEST_SUITES); do bash scripts/build-test-image.sh $$suite & pids+=($$!); done; \
	for pid in "$${pids[@]}"; do wait $$pid; done

lint: venv
	yamllint --strict .
	ansible-lint --profile production
	ruff check .
	ruff format --check .
	antsibull-changelog lint

unit: venv
	pytest -q tests bench/test_report.py

# Each lane stops at its first failed scenario; its lines carry the scenario's name. Each scenario's
# log is also kept in $(LOGS), and on a failure the failed tests and tasks are printed last.
LOGS := .cache/molecule-logs
molecule: venv image
	rm -rf $(LOGS); mkdir -p $(LOGS)
	pids=(); for lane in "$(LANE_1)" "$(LANE_2)"; do \
	  (for scenario in $$lane; do \
	    molecule test --scenario-name $$scenario 2>&1 | tee $(LOGS)/$$scenario.log | sed -u "s/^/[$$scenario] /"; \
	  done) & pids+=($$!); \
	done; \
	failed=0; for pid in "$${pids[@]}"; do wait $$pid || failed=1; done; \
	[ $$failed = 0 ] || { python scripts/failure_summary.py $(LOGS); exit 1; }
	for scenario in $(ALONE); do \
	  molecule test --scenario-name $$scenario 2>&1 | tee $(LOGS)/$$scenario.log \
	    || { python scripts/failure_summary.py $(LOGS); exit 1; }; \
	done

# The images build (mostly waiting on the Debian mirror) while the virtualenv installs and lint runs.
test:
	$(MAKE) --no-print-directory image & images=$$!; $(MAKE) --no-print-directory lint unit; wait $$images
	$(MAKE) --no-print-directory molecule

# The collection's tarball (galaxy.yml: what goes in, and its version).
dist: venv
	ansible-galaxy collection build --force --output-path dist

$(VENV)/.bench-installed: $(VENV)/.installed bench/requirements.txt
	$(VENV)/bin/pip install --quiet -r bench/requirements.txt
	touch $@

bench: $(VENV)/.bench-installed image
	$(VENV)/bin/python bench/run.py

demo: venv docker
	DEBIAN=$(DEBIAN) bash scripts/demo.sh

demo-clean: docker
	docker rm --force flask-uwsgi-demo-debian12 flask-uwsgi-demo-debian13

readme: venv
	python scripts/readme_variables.py

clean:
	rm -rf $(VENV)
