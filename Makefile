# btc-usd-stack — `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST := $(BIN)/pytest
# Ansible, moto and checkov live apart from Airflow: their pins clash.
INFRA := .venv-infra
INFRA_BIN := $(INFRA)/bin
TF := terraform -chdir=terraform
# Where the Terraform registry is unreachable, a local provider mirror stands in.
ifneq ($(wildcard /opt/tf-plugins),)
export TF_CLI_CONFIG_FILE := $(CURDIR)/terraform/mirror.tfrc
endif
# Debian/Ubuntu packages the tests run for real (VictoriaMetrics, MariaDB,
# Docker, Chromium), what mysqlclient needs to build, and what the end-to-end
# deployment needs on this machine (debootstrap for the images, sshd and sudo
# for Molecule's SSH user).
APT_PACKAGES := python3-venv python3-dev build-essential pkg-config libmariadb-dev \
	mariadb-server mariadb-client victoria-metrics \
	docker.io debootstrap openssh-server sudo chromium python3-requests python3-apt \
	prometheus prometheus-alertmanager shellcheck
# VictoriaMetrics from Debian trixie for the tests of the time-series pair on the
# host: its vmauth reads from the first node that answers (first_available,
# 1.112+), which bookworm's 1.79 lacks. apt checks it against trixie's signed index.
VM_TRIXIE := .build/victoria-metrics-trixie
VM_TRIXIE_VERSION := 1.112.0+ds1-2

ANSIBLE := cd ansible && ../$(INFRA_BIN)/ansible-playbook
# What `make up` deploys to (this machine) and `make deploy` (the AWS VM).
LOCAL_INVENTORY := inventories/local
AWS_INVENTORY := inventories/aws

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: deps-apt deps-docker deps-terraform $(VM_TRIXIE)/.installed $(VENV)/.installed $(INFRA)/.installed ## Install what the tests need (Debian packages as root, Docker running, pinned venvs)

.PHONY: deps-docker
deps-docker: ## Start the Docker daemon if it is not running (systemd, or dockerd in the background)
	@if ! docker info >/dev/null 2>&1; then \
	  if [ -d /run/systemd/system ]; then systemctl start docker; \
	  else echo "Starting dockerd (no systemd): log in /var/log/dockerd.log"; \
	    nohup dockerd >/var/log/dockerd.log 2>&1 & \
	  fi; \
	  for _ in $$(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done; \
	  docker info >/dev/null 2>&1 || { echo "The Docker daemon did not start; see /var/log/dockerd.log" >&2; exit 1; }; \
	fi

.PHONY: deps-terraform
deps-terraform:
	@command -v terraform >/dev/null || { echo "Terraform >= 1.9 is not on PATH: install it from https://developer.hashicorp.com/terraform/install" >&2; exit 1; }

.PHONY: deps-apt
deps-apt: ## Install the missing Debian packages (skips what is installed)
	@missing=""; \
	for pkg in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "Missing Debian packages:$$missing; run 'make deps' as root." >&2; exit 1; fi; \
	  echo "Installing Debian packages:$$missing"; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

VM_TRIXIE_APT = -o Dir::Etc::SourceList=$(CURDIR)/$(VM_TRIXIE)/apt/sources.list -o Dir::Etc::SourceParts=/dev/null \
	-o Dir::State::Lists=$(CURDIR)/$(VM_TRIXIE)/apt/lists -o Dir::Cache=$(CURDIR)/$(VM_TRIXIE)/apt/cache
$(VM_TRIXIE)/.installed:
	rm -rf $(VM_TRIXIE)
	mkdir -p $(VM_TRIXIE)/apt/lists/partial $(VM_TRIXIE)/apt/cache/archives/partial
	echo "deb http://deb.debian.org/debian trixie main" > $(VM_TRIXIE)/apt/sources.list
	apt-get -qq $(VM_TRIXIE_APT) update
	cd $(VM_TRIXIE) && apt-get -qq $(VM_TRIXIE_APT) -o APT::Sandbox::User=root download victoria-metrics=$(VM_TRIXIE_VERSION)
	dpkg-deb -x $(VM_TRIXIE)/victoria-metrics_*.deb $(VM_TRIXIE)/root
	rm -rf $(VM_TRIXIE)/apt $(VM_TRIXIE)/*.deb
	$(VM_TRIXIE)/root/usr/bin/vmauth -version
	touch $@

$(VENV)/.installed: requirements/requirements.in requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/requirements.in -c requirements/constraints.txt
	touch $@

$(INFRA)/.installed: requirements/infra.in requirements/infra-constraints.txt
	$(PYTHON) -m venv $(INFRA)
	$(INFRA_BIN)/pip install --quiet --disable-pip-version-check -r requirements/infra.in -c requirements/infra-constraints.txt
	touch $@

.PHONY: dev
dev: deps ## Set up the development environment (.venv/bin/airflow and the test tools)

# The shell scripts: the backup job, the distro images' entrypoints, CI's entry.
SHELL_SCRIPTS := roles/backup/files/image/btc-usd-backup tests/ha/host/host-init roles/distro_images/files/mysql/docker-entrypoint.sh \
	roles/distro_images/files/airflow/entrypoint.sh .ci/run

.PHONY: lint
lint: $(VENV)/.installed ## Lint Python (ruff, with Airflow's AIR rules), YAML, shell scripts (shellcheck) and Terraform
	$(BIN)/ruff check dags tests molecule bench roles
	$(BIN)/ruff format --check dags tests molecule bench roles
	$(BIN)/yamllint --strict .
	terraform fmt -check -recursive terraform
	@command -v shellcheck >/dev/null || { echo "shellcheck is not installed: run 'make deps' (as root)" >&2; exit 1; }
	shellcheck $(SHELL_SCRIPTS)

.PHONY: lint-ansible
lint-ansible: $(INFRA)/.installed ## ansible-lint (production profile) over the playbooks, roles and Molecule
	$(INFRA_BIN)/ansible-lint --offline --profile production

.PHONY: test-unit
test-unit: $(VENV)/.installed ## Unit and DAG-integrity tests (no servers)
	$(PYTEST) tests/unit tests/dags

.PHONY: test-integration
test-integration: deps ## Integration tests against real VictoriaMetrics, MariaDB and Airflow
	$(PYTEST) tests/integration

.PHONY: test-terraform
test-terraform: deps ## Terraform fmt/validate/test, apply/inventory/destroy against moto, checkov
	$(PYTEST) tests/terraform

.PHONY: test-ha
test-ha: deps ## Topology "ha" on seven host containers (sshd, Docker): ansible/ha.yml over SSH, then its failover drills
	$(PYTEST) tests/ha

.PHONY: test-e2e
test-e2e: deps ## Deploy the stack on this machine with Molecule (root), verify it and run the end-to-end tests
	$(PYTEST) tests/e2e

.PHONY: test
test: deps lint lint-ansible ## Everything: install what is missing (root), lint, then every test (deploys on this machine)
	@mkdir -p .build
	@echo "tests/e2e beside the rest, then topology ha; follow them in .build/test-{e2e,local,ha}.log"
	$(MAKE) --no-print-directory -j2 --output-sync=target suite-e2e suite-local-then-ha

# The deployed stack (Docker, Molecule) and everything else share no port or
# server, so they run side by side; each writes its figures to .build/figures/.
# Topology "ha" follows the local suite, beside tests/e2e: its hosts hold a lock
# (harness.docker.DAEMON_LOCK) for which the e2e Docker restart drill waits.
.PHONY: suite-e2e suite-local suite-ha suite-local-then-ha
suite-local-then-ha:
	$(MAKE) --no-print-directory suite-local
	$(MAKE) --no-print-directory suite-ha
suite-e2e:
	FIGURES_NAME=e2e $(PYTEST) --durations=15 tests/e2e 2>&1 | tee .build/test-e2e.log
suite-local:
	FIGURES_NAME=local $(PYTEST) --durations=15 tests --ignore=tests/e2e --ignore=tests/ha 2>&1 | tee .build/test-local.log
suite-ha:
	FIGURES_NAME=ha $(PYTEST) --durations=15 tests/ha 2>&1 | tee .build/test-ha.log

.PHONY: test-roles
test-roles: $(VENV)/.installed $(INFRA)/.installed ## Role interfaces (argument specs, defaults, own variables only) and the scenario's ports
	$(PYTEST) tests/roles

.PHONY: bench
bench: $(VENV)/.installed $(INFRA)/.installed ## Measure the deployed stack (memory, freshness, parse, converge, backfill, query); writes bench/results.json
	PYTHONPATH=dags:tests $(BIN)/python bench/run.py $(BENCH_ARGS)

.PHONY: bench-ha
bench-ha: deps ## Topology "ha" on its seven host containers: throughput with two worker hosts, then one; adds to bench/results.json
	PYTHONPATH=dags:tests $(BIN)/python bench/run.py --only workers

.PHONY: up
up: $(INFRA)/.installed ## Deploy the stack on this machine (README: Quick start)
	$(ANSIBLE) -i $(LOCAL_INVENTORY) site.yml $(ANSIBLE_ARGS)

.PHONY: down
down: $(INFRA)/.installed ## Remove the stack's containers on this machine; the data stays
	$(ANSIBLE) -i $(LOCAL_INVENTORY) down.yml $(ANSIBLE_ARGS)

.PHONY: purge
purge: $(INFRA)/.installed ## Remove the stack's containers AND its data on this machine; the backups stay unless BACKUPS=1
	$(ANSIBLE) -i $(LOCAL_INVENTORY) down.yml -e stack_purge=true -e stack_purge_backups=$(if $(BACKUPS),true,false) $(ANSIBLE_ARGS)

.PHONY: backup
backup: ## Back up the time series and Airflow's database now (ALLOW_SHRINK=1 accepts data that shrank; README: Operate)
	docker exec $(if $(ALLOW_SHRINK),-e BACKUP_ALLOW_SHRINK=1) backup btc-usd-backup now

.PHONY: restore
restore: $(INFRA)/.installed ## Replace the data with a backup (asks to confirm; FROM=s3 for the S3 copy, GENERATION=<name> for an older one)
	$(ANSIBLE) -i $(LOCAL_INVENTORY) restore.yml -e backup_restore_from=$(or $(FROM),local) \
	  -e backup_restore_generation=$(GENERATION) $(ANSIBLE_ARGS)

# The playbook runs as plain Ansible here: it asks about a new VM's SSH host key, where
# Mitogen (ansible/ansible.cfg) refuses it.
.PHONY: deploy
deploy: deps-terraform $(INFRA)/.installed ## Create the AWS VM (terraform/terraform.tfvars), then deploy the stack on it
	$(TF) init -input=false
	@if [ "$$(echo var.topology | $(TF) console)" = '"ha"' ]; then \
	  echo 'topology "ha": make deploy covers topology "single" only; apply terraform/ yourself (docs/scaling.md)' >&2; exit 1; fi
	$(TF) apply
	$(INFRA_BIN)/ansible-inventory -i ansible/$(AWS_INVENTORY) --graph
	ANSIBLE_STRATEGY=linear $(ANSIBLE) -i $(AWS_INVENTORY) site.yml $(ANSIBLE_ARGS)

.PHONY: destroy
destroy: deps-terraform ## Destroy the AWS resources (the data volume is snapshotted first)
	$(TF) init -input=false
	$(TF) destroy

.PHONY: lock
lock: ## Re-resolve requirements/*.in into their constraints files
	rm -rf .build/lock-venv
	$(PYTHON) -m venv .build/lock-venv
	.build/lock-venv/bin/pip install --quiet --disable-pip-version-check -r requirements/requirements.in
	{ echo "# Generated by 'make lock' from requirements.in: exact versions of every Python package."; \
	  .build/lock-venv/bin/pip freeze --exclude-editable; } > requirements/constraints.txt
	rm -rf .build/lock-venv
	$(PYTHON) -m venv .build/lock-venv
	.build/lock-venv/bin/pip install --quiet --disable-pip-version-check -r requirements/infra.in
	{ echo "# Generated by 'make lock' from infra.in: exact versions of every Python package."; \
	  .build/lock-venv/bin/pip freeze --exclude-editable; } > requirements/infra-constraints.txt
	rm -rf .build/lock-venv

.PHONY: clean
clean: ## Remove the environments and caches made here
	rm -rf $(VENV) $(INFRA) .build .pytest_cache .ruff_cache .hypothesis
