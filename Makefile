# petrel -- front door.  CMake does the work underneath; see README.md.
#
#   make            build build/petrel and libpetrel
#   make test       build and run every test (ctest)
#   make test-torch export fresh models with torch and compare live
#   make test-asan  the test suite under AddressSanitizer + UBSan
#   make demo       generate text with a real small LLM (SmolLM2-135M) on the CPU
#   make clean

BUILD ?= build
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps configure test test-torch test-asan demo clean

all: configure
	cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

deps:
	@./scripts/install_deps.sh

configure: deps
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-torch: all
	@venv=$$(./scripts/setup_venv.sh) && PETREL=$(BUILD)/petrel $$venv/bin/python tests/torch/run_live.py \
	  && PETREL=$(BUILD)/petrel $$venv/bin/python tests/torch/test_tokenizer_hf.py --count 10 \
	  && PETREL=$(BUILD)/petrel $$venv/bin/python tests/torch/test_export_logits.py \
	  && PETREL=$(BUILD)/petrel $$venv/bin/python tests/torch/test_real_model.py

test-asan: deps
	@test -f $(BUILD)-asan/CMakeCache.txt || cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DPETREL_SANITIZE=ON -DPETREL_CUDA=OFF
	cmake --build $(BUILD)-asan -j $(JOBS)
	cd $(BUILD)-asan && ctest --output-on-failure -j $(JOBS)

demo: all
	@./scripts/demo.sh $(BUILD)/petrel

clean:
	rm -rf $(BUILD) $(BUILD)-asan
