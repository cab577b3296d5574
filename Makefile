# memlens: build, install, demo, test.
#   make install demo   build, install into $(PREFIX) and run the bundled demo
#   make test           build everything and run the whole test suite
PREFIX ?= $(HOME)/.local
CARGO ?= cargo
RELEASE := target/release

.PHONY: build install demo test lint bench clean-demo

build:
	$(CARGO) build --release --workspace

# The CLI finds its recorder library in ../lib/memlens/ relative to itself.
install: build
	install -Dm755 $(RELEASE)/memlens $(PREFIX)/bin/memlens
	install -Dm644 $(RELEASE)/libmemlens_preload.so $(PREFIX)/lib/memlens/libmemlens_preload.so
	@echo "installed $(PREFIX)/bin/memlens (make sure $(PREFIX)/bin is in your PATH)"

demo: build
	@mkdir -p target/demo
	@rm -f target/demo/*.trace*
	gcc -g -O1 -o target/demo/leaky examples/demo/leaky.c
	$(RELEASE)/memlens run -o target/demo/memlens.%n.%p.trace -- target/demo/leaky
	$(RELEASE)/memlens report target/demo/memlens.leaky.*.trace

# The integration tests run target/release/memlens, which needs the recorder library
# built next to it: build the workspace first, then test.
test: build
	$(CARGO) test --release --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: build
	bench/run
