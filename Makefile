# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make run   - create .venv, install ipcnet and its fast extras only, run the demo tour, then the
#                demo servers until Ctrl-C
#   make test  - also install the test and bench extras and the Debian tools the tests use, run the suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUNSTAMP := $(VENV)/.installed-run
comma  := ,

.PHONY: run test lint typecheck check bench system-deps clean

# ipcnet and the extras $(1), by uv (parallel downloads; the bytecode compiled once, as pip
# does): a fresh .venv with every extra and nothing cached took 28 s, pip 104 s. pip is the
# fallback where uv cannot be had.
define install
	test -x $(BIN)/python || $(PYTHON) -m venv --without-pip $(VENV)
	if test -x $(BIN)/uv || $(PYTHON) -m pip --python $(BIN)/python install -q uv; then \
	  $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[$(1)]'; \
	else $(BIN)/python -m ensurepip >/dev/null && $(BIN)/python -m pip install -q -e '.[$(1)]'; fi
endef

$(RUNSTAMP): pyproject.toml  # what the demo uses: the runtime and its fast extras
	$(call install,fast)
	touch $@

# the rest too (tests, linters, benchmarks and their peers), in one run; it covers run's
$(STAMP): pyproject.toml
	$(call install,test$(comma)fast$(comma)bench)
	touch $@ $(RUNSTAMP)

run: $(RUNSTAMP)
	$(BIN)/ipcnet demo --serve

# The Debian tools the tests use, in one call so that a fresh machine runs apt-get once:
#   socat curl ss ip netstat nft nc haproxy chromium - peers and the kernel's tables
#   openssl stunnel4 - TLS interop (issue 11; tests/test_tls_conformance.py)
#   clang bpftool bpf_helpers.h iptables - xdp and its conformance counters (issue 16)
#   nginx and its stream module - PROXY protocol conformance peer (issue 12)
#   lsof - the inspector's conformance (sockets --fds); promtool - metrics (issue 14)
#   goaccess - a log analyser that must parse every access log line (audit 6)
#   wget aria2c lftp - download clients the web server must serve as nginx does (audit 7)
system-deps:
	./scripts/system-deps socat curl ss ip netstat nft nc haproxy chromium openssl stunnel4 \
	  clang bpftool /usr/include/bpf/bpf_helpers.h iptables \
	  nginx /usr/lib/nginx/modules/ngx_stream_module.so lsof promtool goaccess \
	  wget aria2c lftp lsipc ipcmk

# the install and apt-get side by side (on a fresh machine each waits on downloads); then the
# bytecode, once: where PYTHONDONTWRITEBYTECODE is set (as here), every server and client
# a test starts compiled ipcnet's modules again (3583 tests: 241 s without, 199 s with).
# Four workers on two CPUs: the tests wait on timers and peers more than they compute (with
# two, 44% of the CPUs were busy; 4639 tests: two workers 320 s, three 263 s; 4718 tests:
# three 258 s with 79% busy, four 240 s)
test:
	$(MAKE) --no-print-directory -j2 $(STAMP) system-deps
	$(BIN)/python -m compileall -q src tests
	$(BIN)/python -m pytest -q -n 4 --dist loadgroup

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
