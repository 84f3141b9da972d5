# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make run   - create .venv, install ipcnet and its fast extras only, run the demo tour, then the
#                demo servers until Ctrl-C
#   make test  - also install the test and bench extras and the Debian tools the tests use, run the suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUNSTAMP := $(VENV)/.installed-run

.PHONY: run test lint typecheck check bench system-deps clean

$(RUNSTAMP): pyproject.toml  # what the demo uses: the runtime and its fast extras
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[fast]'
	touch $@

$(STAMP): $(RUNSTAMP)  # the rest: tests, linters, benchmarks and their peers
	$(BIN)/python -m pip install -q -e '.[test,fast,bench]'
	touch $@

run: $(RUNSTAMP)
	$(BIN)/ipcnet demo --serve

system-deps:
	./scripts/system-deps socat curl ss ip netstat nft nc haproxy chromium
	./scripts/system-deps openssl  # TLS interop tests: openssl s_client/s_server (issue 11)
	./scripts/system-deps stunnel4  # TLS interop test: stunnel both ways (tests/test_tls_conformance.py)
	./scripts/system-deps clang bpftool /usr/include/bpf/bpf_helpers.h  # xdp (issue 16)
	./scripts/system-deps iptables  # xdp conformance: iptables-legacy counters beside ours (tests/test_xdp_conformance.py)
	./scripts/system-deps nginx /usr/lib/nginx/modules/ngx_stream_module.so  # PROXY protocol conformance: nginx stream as a peer
	./scripts/system-deps lsof  # inspector conformance test: lsof -p beside sockets --fds
	./scripts/system-deps promtool  # metrics conformance test: promtool check metrics (tests/test_scale_conformance.py)

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	./scripts/system-deps wrk nginx ss netstat
	$(BIN)/ipcnet bench transports
	$(BIN)/ipcnet bench models
	$(BIN)/ipcnet bench rpc
	$(BIN)/ipcnet bench http
	$(BIN)/ipcnet bench inspector
	$(BIN)/ipcnet bench tls && $(BIN)/ipcnet bench http --tls --servers ipcnet,nginx  # issue 11
	if [ "$$(id -u)" -eq 0 ]; then ./scripts/system-deps clang bpftool perf gcc /usr/include/bpf/bpf_helpers.h && $(BIN)/ipcnet bench xdp; else echo "bench xdp: skipped (needs root)"; fi
	./scripts/system-deps socat haproxy taskset /usr/lib/nginx/modules/ngx_stream_module.so  # bench relay (issue 12)
	$(BIN)/ipcnet bench relay
	./scripts/system-deps wrk nginx && PYTHONPATH=$(CURDIR)/src $(BIN)/python scripts/bench_scale.py scaling && PYTHONPATH=$(CURDIR)/src $(BIN)/python scripts/bench_scale.py upgrade  # prefork scaling, upgrade under load (issue 14)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
