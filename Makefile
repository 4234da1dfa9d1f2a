# libsock — top-level build. The two commands a new user needs:
#   make demo    builds everything and runs the loopback demo
#   make test    runs every test (cargo test, C tests, C tests under ASan+UBSan)

CARGO  ?= cargo
CC     ?= cc
LIBDIR := target/release
EXAMPLE_CFLAGS := -std=c11 -Wall -Wextra -Werror -pedantic -O2 -g -pthread -Iinclude
EXAMPLE_LDFLAGS := -L$(LIBDIR) -lsock -Wl,-rpath,$(abspath $(LIBDIR))

.PHONY: all build header examples demo test test-rust test-c lint clean

all: build examples

build:
	$(CARGO) build --release

# Regenerate include/sock.h from the Rust sources (commit the result).
header:
	SOCK_REGEN_HEADER=1 $(CARGO) build --release

examples: build examples/build/demo

examples/build/demo: examples/demo.c include/sock.h $(LIBDIR)/libsock.so
	@mkdir -p $(dir $@)
	$(CC) $(EXAMPLE_CFLAGS) $< -o $@ $(EXAMPLE_LDFLAGS)

demo: examples
	./examples/build/demo

test: build test-rust test-c

test-rust:
	$(CARGO) test --release

test-c: build
	$(MAKE) -C c-tests headers
	$(MAKE) -C c-tests run-asan
	$(MAKE) -C c-tests run

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf examples/build
	$(MAKE) -C c-tests clean
