# shoal: build, test, lint. `make test` is what CI runs (.ci/run).
CARGO ?= cargo

.PHONY: build test lint fmt clean

build:
	$(CARGO) build --release
	@ls -l target/release/shoal

# Lint first (fast failure), then every test: unit, integration and the
# interop tests against real libtorrent/opentracker (which say loudly when
# those tools are missing, and fail under CI=true).
test: lint
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
