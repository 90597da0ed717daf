# petrel -- front door.  CMake does the work underneath; see README.md.
#
#   make            build build/petrel and libpetrel
#   make test       build and run every test (ctest)
#   make test-torch export fresh models with torch and compare live
#   make demo       run a bundled exported model and print its outputs
#   make clean

BUILD ?= build
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps configure test test-torch demo clean

all: configure
	cmake --build $(BUILD) -j $(JOBS)

deps:
	@./scripts/install_deps.sh

configure: deps
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-torch: all
	@venv=$$(./scripts/setup_venv.sh) && PETREL=$(BUILD)/petrel $$venv/bin/python tests/torch/run_live.py

demo: all
	@./scripts/demo.sh $(BUILD)/petrel

clean:
	rm -rf $(BUILD)
