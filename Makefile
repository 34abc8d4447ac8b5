# Thin wrapper over CMake. `make` builds build/sdti; `make test` builds and runs every test;
# `make demo` runs the built-in demo. Missing Debian packages are installed first.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all deps configure test test-asan fuzz demo clean format

all: deps configure
	cmake --build $(BUILD) -j $(JOBS)

deps:
	@bash scripts/install-deps.sh

configure:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Unit tests again under AddressSanitizer + UBSan (separate build folder).
test-asan: deps
	@cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DSDTI_SANITIZE=ON -DCMAKE_C_COMPILER=clang $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD)-asan -j $(JOBS)
	cd $(BUILD)-asan && ctest --output-on-failure -j $(JOBS) -L unit

# libFuzzer targets, each run for FUZZ_SECONDS on its seed corpus.
FUZZ_SECONDS ?= 60
fuzz: deps
	@cmake -S . -B $(BUILD)-fuzz -DCMAKE_BUILD_TYPE=Debug -DSDTI_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD)-fuzz -j $(JOBS)
	bash scripts/run-fuzzers.sh $(BUILD)-fuzz $(FUZZ_SECONDS)

demo: all
	bash scripts/demo.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-fuzz
