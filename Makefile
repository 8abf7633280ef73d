# tidstorage: the two commands of the README are `make run` and `make test`.

CARGO ?= cargo
PYTHON3 ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python

.PHONY: all build run test venv clean

all: build

build:
	$(CARGO) build --release

# The virtualenv with the real ZODB/ZEO used as ground truth by the tests.
venv: $(VENV)/.installed

$(VENV)/.installed: tests/python/requirements.txt
	$(PYTHON3) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
	touch $@

test: venv
	TIDSTORAGE_PYTHON=$(abspath $(VENV_PY)) $(CARGO) test --all-targets

clean:
	$(CARGO) clean
	rm -rf $(VENV)
