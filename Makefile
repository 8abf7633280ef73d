# tidstorage. The README's two commands: `make run` and `make test`.

CARGO ?= cargo
PYTHON3 ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
TARGET := x86_64-unknown-linux-gnu
STATIC_BIN := target/$(TARGET)/release/tidstorage
RUN_DIR := run

export TIDSTORAGE_PYTHON := $(abspath $(VENV_PY))

.PHONY: all build release run test test-rust test-python lint check-static venv generate install clean

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

# The virtualenv with the real ZODB/ZEO used as ground truth by the tests,
# and the Python client (clients/python) installed editable from this
# checkout. The client's stamp is named after the checkout so that a venv
# shared by several checkouts reinstalls it from the one running make.
CLIENT_STAMP := $(VENV)/.client-installed$(subst /,_,$(CURDIR))

venv: $(VENV)/.installed $(CLIENT_STAMP)

$(VENV)/.installed: tests/python/requirements.txt
	$(PYTHON3) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
	touch $@

$(CLIENT_STAMP): clients/python/pyproject.toml $(VENV)/.installed
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check --no-deps -e clients/python
	touch "$@"

test: venv lint test-rust test-python check-static

test-rust: venv
	$(CARGO) test --all-targets

# The Python client's tests and the end-to-end suite (real ZEO servers, the
# debug binary). pytest's "no tests collected" (5) is a failure, not a pass.
test-python: venv
	$(CARGO) build --quiet
	TIDSTORAGE_BIN=$(abspath target/debug/tidstorage) $(VENV_PY) -m pytest -q -p no:cacheprovider \
		clients/python/tests tests/e2e; \
	st=$$?; if [ $$st -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$st

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --quiet -- -D warnings

# Man pages and completions from the clap definitions (committed; a test
# fails when they are stale).
generate:
	$(CARGO) run --quiet -- generate man man
	$(CARGO) run --quiet -- generate completions completions

# Installs the static binary, the multi-call names, man pages and
# completions under $(DESTDIR)$(PREFIX).
PREFIX ?= /usr/local
install: release
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	install -m 755 $(STATIC_BIN) $(DESTDIR)$(PREFIX)/bin/tidstorage
	for n in tidstoraged tidstorage-serve tidstorage-dump tidstorage-bootstrap-status \
		tidstorage-cut tidstorage-backup tidstorage-restore tidstorage-inflight \
		tidstorage-resolve; do \
		ln -sf tidstorage $(DESTDIR)$(PREFIX)/bin/$$n; done
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 completions/tidstorage.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/tidstorage
	install -m 644 completions/_tidstorage $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_tidstorage
	install -m 644 completions/tidstorage.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/tidstorage.fish

clean:
	$(CARGO) clean
	rm -rf $(VENV)
