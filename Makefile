# shoal: build, test, lint. `make test` is what CI runs (.ci/run).
CARGO ?= cargo

.PHONY: build test lint fmt clean demo bench bench-fleet fuzz

build:
	$(CARGO) build --release
	@ls -l target/release/shoal

# Lint first (fast failure), then every test: unit, integration and the
# interop tests against real libtorrent/opentracker (which say loudly when
# those tools are missing, and fail under CI=true).
test: lint
	$(CARGO) test --all-targets

# A real download on 127.0.0.1: shoal tracker + shoal seed + shoal get,
# bytes compared, throughput printed, everything stopped afterwards.
demo:
	tests/tools/demo.sh

# shoal against python3-libtorrent on 127.0.0.1 (issue 6): installs what it
# needs, builds release, prints the tables. Several GiB under /tmp, minutes;
# wants a quiet machine. Not part of `make test`. BENCH_ARGS=--quick for less.
bench:
	tests/tools/bench.sh $(BENCH_ARGS)

# A swarm in network namespaces (as root): one seeder and N = 4, 8, 16
# leechers on tc-shaped links, shoal and python3-libtorrent in the same run,
# timed to the LAST leecher against the F/u bound, with the machine's CPU.
# Creates and deletes its namespaces. FLEET_ARGS=--quick for less; see
# `tests/tools/bench_fleet.py --help` (--rate, --size, --ns, --runs).
bench-fleet:
	$(CARGO) build --release
	/usr/bin/python3 tests/tools/bench_fleet.py --shoal target/release/shoal $(FLEET_ARGS)

# Coverage-guided fuzzing of every parser (cargo-fuzz, nightly toolchain):
# FUZZ_SECONDS per target (default 60). CI runs it for 30 s per target.
FUZZ_SECONDS ?= 60
fuzz:
	tests/tools/fuzz.sh $(FUZZ_SECONDS)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
