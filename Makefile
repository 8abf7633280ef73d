# tidstorage. The README's two commands: `make run` and `make test`.

CARGO ?= cargo
PYTHON3 ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
TARGET := x86_64-unknown-linux-gnu
STATIC_BIN := target/$(TARGET)/release/tidstorage
RUN_DIR := run

export TIDSTORAGE_PYTHON := $(abspath $(VENV_PY))

.PHONY: all build release run test test-rust lint check-static venv generate clean

all: build

build:
	$(CARGO) build --release

# The statically linked executable (glibc crt-static; no NSS needed: user
# and group names are resolved from /etc/passwd and /etc/group directly).
release: $(STATIC_BIN)

$(STATIC_BIN): FORCE
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --target $(TARGET)

FORCE:

check-static: release
	@if readelf -l $(STATIC_BIN) | grep -q INTERP || readelf -d $(STATIC_BIN) | grep -q NEEDED; then \
		echo "error: $(STATIC_BIN) is dynamically linked:"; readelf -d $(STATIC_BIN) | grep NEEDED; exit 1; \
	else echo "ok: $(STATIC_BIN) is statically linked (no interpreter, no shared libraries)"; fi
	$(STATIC_BIN) --version

# Foreground daemon on defaults: 127.0.0.1:9001, status file in ./run/.
run: build
	mkdir -p $(RUN_DIR)
	./target/release/tidstorage serve --status-file $(RUN_DIR)/tidstorage.tid

# The virtualenv with the real ZODB/ZEO used as ground truth by the tests.
venv: $(VENV)/.installed

$(VENV)/.installed: tests/python/requirements.txt
	$(PYTHON3) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
	touch $@

test: venv lint test-rust check-static

test-rust: venv
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --quiet -- -D warnings

# Man pages and completions from the clap definitions (committed; a test
# fails when they are stale).
generate:
	$(CARGO) run --quiet -- generate man man
	$(CARGO) run --quiet -- generate completions completions

clean:
	$(CARGO) clean
	rm -rf $(VENV)
