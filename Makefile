# tidstorage. The README's two commands: `make run` and `make test`.

CARGO ?= cargo
PYTHON3 ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
TARGET := x86_64-unknown-linux-gnu
STATIC_BIN := target/$(TARGET)/release/tidstorage
RUN_DIR := run

export TIDSTORAGE_PYTHON := $(abspath $(VENV_PY))

.PHONY: all build release run test prereqs test-rust test-python faults check-strace lint check-static venv generate install clean fuzz

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

test: prereqs venv lint test-rust test-python check-static

# What `make test` needs beyond cargo and python3, checked first so a
# missing piece is named before minutes of building. Optional parts that
# are skipped print a `skipped:` line (counted in .ci/run's summary).
PYTHON2 ?= $(HOME)/.pyenv/versions/2.7.18/bin/python
prereqs:
	@command -v readelf >/dev/null || { echo "error: readelf (binutils) is needed by check-static"; exit 1; }
	@if [ ! -x "$(PYTHON2)" ]; then \
		echo "skipped: no Python 2.7 at $(PYTHON2) (set PYTHON2): the checks against the original Products.TIDStorage are not run"; \
	fi

test-rust: venv
	$(CARGO) test --all-targets

# The Python client's tests, the end-to-end suite (real ZEO servers, the
# debug binary) and the short fault-injection suite (strace).
# pytest's "no tests collected" (5) is a failure, not a pass.
test-python: venv check-strace
	$(CARGO) build --quiet
	TIDSTORAGE_BIN=$(abspath target/debug/tidstorage) $(VENV_PY) -m pytest -q -p no:cacheprovider \
		clients/python/tests tests/e2e tests/faults; \
	st=$$?; if [ $$st -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$st

# The full fault-injection sweep (docs/faults.md): every file-changing
# system call of cut, backup and restore failed (EIO, ENOSPC) and killed at
# (SIGKILL), one at a time. Several minutes; niced, the machine is shared.
# Prints one line per case and writes them to target/faults-report.txt;
# exits 1 when any promise broke.
faults: venv check-strace
	$(CARGO) build --quiet
	mkdir -p target
	TIDSTORAGE_BIN=$(abspath target/debug/tidstorage) nice -n 10 $(VENV_PY) tests/faults/sweep.py \
		--report target/faults-report.txt

check-strace:
	@command -v strace >/dev/null || { echo "error: strace is missing: apt-get install strace" \
		"(the fault-injection tests need it)"; exit 1; }

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --quiet -- -D warnings

# Fuzzing (docs/fuzzing.md), not part of `make test`: each target in turn
# for FUZZ_SECONDS, under nice, with cargo-fuzz's libFuzzer on the stable
# toolchain (RUSTC_BOOTSTRAP=1 unlocks the nightly-only sanitizer flags).
# New inputs go to fuzz/run/corpus/<target> (not committed); the seeds in
# fuzz/corpus/<target> are only read. A finding stops the run, its input
# saved under fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= protocol datafs index statuslog config
FUZZ_FLAGS ?= -max_len=4096 -print_final_stats=1
fuzz:
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build
	@set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/run/corpus/$$t; \
		echo "== fuzz $$t for $(FUZZ_SECONDS) s (log: fuzz/run/$$t.log)"; \
		RUSTC_BOOTSTRAP=1 nice -n 10 $(CARGO) fuzz run $$t fuzz/run/corpus/$$t fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) > fuzz/run/$$t.log 2>&1 \
			|| { tail -40 fuzz/run/$$t.log; exit 1; }; \
		grep -E 'cov: ' fuzz/run/$$t.log | tail -1; grep -E '^(Done |stat::)' fuzz/run/$$t.log; \
	done

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
