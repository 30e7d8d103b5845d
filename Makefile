# derrumbe: `make demo` and `make test` set everything up themselves on a fresh
# Debian machine with Python 3.11 (apt packages for headless OpenGL, a venv, pip).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GEN_STAMP := $(VENV)/.installed-gen
WEB_STAMP := $(VENV)/.installed-web
APT_PKGS := libegl1 libgl1 libgl1-mesa-dri libgles2
# The traditional baseline of the benchmarks: Debian's Blender 3.4 (its Mantaflow bakes,
# bpy 5.0's crashes) and a virtual display for EEVEE's OpenGL.
BENCH_APT := blender xvfb xauth
# The web page's end-to-end test drives Debian's Chromium through its chromedriver.
TEST_APT := chromium chromium-driver

# Installs the Debian packages named in $(1) that are missing (with sudo when not root).
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

.PHONY: demo test preview serve lookdev bench bench-quick bench-deps setup gen web test-deps system-deps clean

demo: setup
	$(BIN)/derrumbe demo -o out/demo

preview: setup
	$(BIN)/derrumbe demo --preview -o out/demo-preview

# The refine tests run a tiny random video model on the CPU, the web tests a server and a
# headless Chromium, the cluster tests a Dask LocalCluster: the gen, web and farm extras come too.
# The slowest tests are listed at the end: CI's 15 minutes are spent there. Two workers
# (pytest-xdist), a test file each, because a third of the suite waits on subprocesses,
# servers and Chromium: 12:17 -> 10:21 on 2 cores with the shared plates. Each worker on
# one thread (numba's and OpenMP's pools): two workers each running two threads on 2 cores
# spent a quarter of their CPU switching (10:21 -> 7:48). Results do not depend on the
# thread count (test_dust runs the solver on 1 and 2 threads in fresh processes).
test: setup gen web test-deps
	NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 tests

serve: web
	$(BIN)/derrumbe serve

# Renders every shared plate and the demo photo, with contact sheets and measured figures
# (benchmarks/lookdev.py; out/lookdev/report.md). About 2 minutes a plate.
lookdev: setup
	$(BIN)/python benchmarks/lookdev.py

# Not part of `make test`. About 75 minutes on 2 cores; see benchmarks/README.md.
bench: setup bench-deps
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_outputs.py
	$(BIN)/python benchmarks/bench_scaling.py
	$(BIN)/python benchmarks/bench_traditional.py

# The comparison with Blender, reduced (640x360, 2 s, 300 pieces): under 15 minutes.
bench-quick: setup bench-deps
	$(BIN)/python benchmarks/bench_traditional.py --quick

bench-deps:
	$(call apt_install,$(BENCH_APT))

setup: system-deps $(STAMP)

# torch, diffusers, transformers for `derrumbe refine` (not needed to render).
gen: setup $(GEN_STAMP)

# fastapi, uvicorn for `derrumbe serve` (and httpx, selenium for its tests); dask, distributed and
# openjd-cli (the farm extra) for the cluster and farm tests.
web: setup $(WEB_STAMP)

$(WEB_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e '.[test,web,farm]'
	touch $(WEB_STAMP)

test-deps:
	$(call apt_install,$(TEST_APT))

$(GEN_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e '.[test,gen]'
	touch $(GEN_STAMP)

# Headless OpenGL through EGL (Mesa llvmpipe on a CPU): install only what is missing.
system-deps:
	$(call apt_install,$(APT_PKGS))

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# The contrib build replaces the plain one (both own cv2/; together they break it).
	@if $(BIN)/pip show -q opencv-python-headless >/dev/null 2>&1; then $(BIN)/pip uninstall -q -y opencv-python-headless; fi
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf out .pytest_cache
