# libsock — top-level build. The two commands a new user needs:
#   make demo    builds everything and runs the loopback demo
#   make test    runs every test: cargo test, the C tests (plain and under
#                ASan+UBSan), the C++ wrapper's tests, the README's C blocks,
#                packaging, the Python tests

CARGO  ?= cargo
PREFIX ?= /usr/local
DESTDIR ?=
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))
CC     ?= cc
CXX    ?= c++
LIBDIR := target/release
EXAMPLE_CFLAGS := -std=c11 -Wall -Wextra -Werror -pedantic -O2 -g -pthread -Iinclude
EXAMPLE_LDFLAGS := -L$(LIBDIR) -lsock -Wl,-rpath,$(abspath $(LIBDIR))

.PHONY: all build header examples demo test test-http test-rust test-c test-cpp test-readme test-packaging test-python install bench bench-quick bench-server fuzz test-valgrind test-loom soak lint clean

all: build examples

build:
	$(CARGO) build --release

# Regenerate include/sock.h from the Rust sources (commit the result).
header:
	SOCK_REGEN_HEADER=1 $(CARGO) build --release

EXAMPLES := examples/build/demo examples/build/async_demo examples/build/http_server

examples: build $(EXAMPLES)

examples/build/%: examples/%.c include/sock.h $(LIBDIR)/libsock.so
	@mkdir -p $(dir $@)
	$(CC) $(EXAMPLE_CFLAGS) $< -o $@ $(EXAMPLE_LDFLAGS)

demo: examples
	./examples/build/demo
	./examples/build/async_demo
	$(MAKE) --no-print-directory -C tests/cpp demo

test: build test-rust test-c test-cpp test-readme test-packaging test-python test-http

# examples/http_server (tests/http_server.sh): curl, pipelining, 400/431,
# resets, 1,000 connections, a slow reader; plain and under ASan+UBSan.
HTTP_TEST_BUILD := tests/http/build
test-http: build examples/build/http_server
	@mkdir -p $(HTTP_TEST_BUILD)
	$(CC) -std=c11 -Wall -Wextra -Werror -pedantic -O2 -g -pthread tests/http/http_client.c -o $(HTTP_TEST_BUILD)/http_client
	$(CC) $(EXAMPLE_CFLAGS) -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
	    examples/http_server.c -o $(HTTP_TEST_BUILD)/http_server_asan $(EXAMPLE_LDFLAGS)
	./tests/http_server.sh examples/build/http_server $(HTTP_TEST_BUILD)/http_client
	./tests/http_server.sh $(HTTP_TEST_BUILD)/http_server_asan $(HTTP_TEST_BUILD)/http_client

test-rust:
	$(CARGO) test --release

test-c: build
	$(MAKE) -C c-tests headers
	$(MAKE) -C c-tests run-asan
	$(MAKE) -C c-tests run

# Every C block of the README compiles (and links) against the header.
test-readme: build
	@mkdir -p examples/build/readme
	@awk '/^```c$$/{n++; f=sprintf("examples/build/readme/block%d.c", n); print "#include \"sock.h\"" > f; next} \
	     /^```$$/{f=""} f{print > f}' README.md
	@for f in examples/build/readme/block*.c; do \
	    if grep -q 'int main' $$f; then \
	        $(CC) $(EXAMPLE_CFLAGS) $$f -o $${f%.c} $(EXAMPLE_LDFLAGS) || exit 1; \
	    else \
	        $(CC) $(EXAMPLE_CFLAGS) -c $$f -o $${f%.c}.o || exit 1; \
	    fi; \
	done
	@awk '/^```cpp$$/{n++; f=sprintf("examples/build/readme/block%d.cpp", n); next} \
	     /^```$$/{f=""} f{print > f}' README.md
	@for f in examples/build/readme/block*.cpp; do \
	    $(CXX) -std=c++17 -Wall -Wextra -Werror -pedantic -Iinclude -c $$f -o $${f%.cpp}.o || exit 1; \
	done
	@awk '/^```python$$/{n++; f=sprintf("examples/build/readme/block%d.py", n); next} \
	     /^```$$/{f=""} f{print > f}' README.md
	@for f in examples/build/readme/block*.py; do python3 -m py_compile $$f || exit 1; done
	@echo "README: every C, C++ and Python block compiles ($$(ls examples/build/readme/block*.c examples/build/readme/block*.cpp examples/build/readme/block*.py | wc -l) blocks)"

test-cpp: build
	$(MAKE) -C tests/cpp run run-asan

# pytest is fetched with pip when missing (as bench/ fetches libuv).
test-python: build
	@python3 -m pytest --version >/dev/null 2>&1 || { \
	    echo "test-python: pytest is missing; installing it with pip"; \
	    python3 -m pip install -q pytest || python3 -m pip install -q --user pytest || { \
	        echo "test-python: could not install pytest: install it (python3 -m pip install pytest, or Debian's python3-pytest) and run make test again" >&2; \
	        exit 1; }; }
	python3 -m pytest -q bindings/python/tests

test-packaging: build
	./tests/packaging.sh

# Installs libsock.so (SONAME libsock.so.MAJOR, with the usual links),
# libsock.a, the headers and pkg-config's sock.pc under DESTDIR/PREFIX.
install: build
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(LIBDIR)/libsock.so $(DESTDIR)$(PREFIX)/lib/libsock.so.$(VERSION)
	ln -sf libsock.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libsock.so.$(MAJOR)
	ln -sf libsock.so.$(MAJOR) $(DESTDIR)$(PREFIX)/lib/libsock.so
	install -m 644 $(LIBDIR)/libsock.a $(DESTDIR)$(PREFIX)/lib/libsock.a
	install -m 644 $(wildcard include/sock.h include/sock.hpp) $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' sock.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/sock.pc

# Benchmarks (bench/README.md): the full run writes bench/results/latest.md
# and a chart; the quick one is a smoke test of every program.
# The seeded stress test for as long as asked: make soak SOAK_SECONDS=3600
# (SOCK_STRESS_SEED=N replays a printed seed).
SOAK_SECONDS ?= 300
soak: build
	$(MAKE) -C c-tests soak SECONDS=$(SOAK_SECONDS)

bench: build
	$(MAKE) -C bench run

bench-quick: build
	$(MAKE) -C bench quick server-quick

# The HTTP server under wrk against libuv and epoll responders
# (bench/README.md): -> bench/results/server.md (REPS=3 SERVER_SECONDS=5 by default).
bench-server: build
	$(MAKE) -C bench server REPS=$(or $(REPS),3)

# The C tests under valgrind memcheck: any error, or any definitely lost
# byte, fails the test. valgrind runs one thread at a time, so tests whose
# precondition is real parallelism or real time (a send that must go
# pending while a reader drains, or behind a proxy throttled to N bytes/s)
# are skipped by name (they run plain and under ASan in make test); so is
# the fork tests, whose children valgrind leak-checks with the memory of the
# parent's other threads (an engine thread, a trace call in progress)
# unreachable there (reported as lost; not a leak). Each test
# may take up to 10 minutes (valgrind slows thread-heavy tests 20-50x).
# --fair-sched=yes: without it, threads that call in a loop without
# blocking can hold valgrind's one running slot for tens of seconds, and a
# test's peer reader gives up waiting (seen in close_while_many_threads_use_handle).
# SOCK_TEST_WAIT_SCALE=10 stretches the tests' liveness bounds (a callback
# that must run, data a peer must get) by as much as valgrind slows them:
# 1,000 connections draining 256 KiB each took 34-47 s of a 50 s bound here
# and went over it on a CI machine. valgrind gives the program its soft
# RLIMIT_NOFILE as the hard limit, so the recipe first raises the soft one
# to the hard one (the 1,000-connection tests need 2,064 descriptors).
VALGRIND_SKIP := async_callback_chain_million_steps async_callback_chain_inline_off \
    fault_throttle_async_intact fault_throttle_nonblocking_partial \
    fork_child_sockets_and_engines trace_fork_child_not_held_by_parent_calls
test-valgrind: build
	$(MAKE) -C c-tests all
	ulimit -n "$$(ulimit -Hn)" 2>/dev/null || true; \
	SOCK_TEST_SKIP="$(VALGRIND_SKIP)" SOCK_TEST_TIMEOUT_S=600 SOCK_TEST_WAIT_SCALE=10 valgrind -q --fair-sched=yes --leak-check=full \
	    --errors-for-leak-kinds=definite --error-exitcode=99 ./c-tests/build/runner

# The loom model of the per-socket operation queue (tests/loom_queue.rs):
# the queue is built with loom's locks and every interleaving of a
# blocking sender, async submitters, the engine's flush and close is checked.
test-loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom $(CARGO) test --release --test loom_queue

# Fuzzing (fuzz/): random sequences of API calls on loopback sockets.
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address); the stable
# compiler, the only one CI machines have, accepts them with RUSTC_BOOTSTRAP=1.
# A crash leaves its input in fuzz/artifacts/: copy it to fuzz/regressions/,
# where `cargo test` replays it forever.
FUZZ_SECONDS ?= 60
fuzz:
	RUSTC_BOOTSTRAP=1 cargo fuzz run api_sequence -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf examples/build tests/http/build
	$(MAKE) -C c-tests clean
