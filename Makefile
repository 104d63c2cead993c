# The two commands:  make demo   and   make test
# Each installs what it needs (infra/bootstrap.sh) and starts and stops what it uses.

.PHONY: demo test test-all bench setup clean

setup:
	infra/bootstrap.sh

demo: setup
	.venv/bin/driftloop demo

test: setup
	.venv/bin/python -m pytest

test-all: setup
	.venv/bin/python -m pytest -m ""

bench: setup
	.venv/bin/python bench/run_all.py

clean:
	-.venv/bin/driftloop kafka stop
	rm -rf .driftloop .pytest_cache
