# derrumbe: `make demo` and `make test` set everything up themselves on a fresh
# Debian machine with Python 3.11 (apt packages for headless OpenGL, a venv, pip).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GEN_STAMP := $(VENV)/.installed-gen
APT_PKGS := libegl1 libgl1 libgl1-mesa-dri libgles2

.PHONY: demo test preview bench setup gen system-deps clean

demo: setup
	$(BIN)/derrumbe demo -o out/demo

preview: setup
	$(BIN)/derrumbe demo --preview -o out/demo-preview

# The refine tests run a tiny random video model on the CPU: the gen extra comes too.
test: setup gen
	$(BIN)/python -m pytest -q tests

bench: setup
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_outputs.py

setup: system-deps $(STAMP)

# torch, diffusers, transformers for `derrumbe refine` (not needed to render).
gen: setup $(GEN_STAMP)

$(GEN_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e '.[test,gen]'
	touch $(GEN_STAMP)

# Headless OpenGL through EGL (Mesa llvmpipe on a CPU): install only what is missing.
system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf out .pytest_cache
