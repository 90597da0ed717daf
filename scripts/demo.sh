#!/usr/bin/env bash
# `make demo`: run a bundled exported model -- a tiny random-weight Llama
# with a static KV cache, exported by torch.export and lowered to core ATen
# -- for four calls on one loaded program (a 5-token prefill, then three
# single-token decode steps continuing from the cache), print its outputs
# and set them beside torch's, recorded when the model was exported.
set -euo pipefail
petrel=${1:-build/petrel}
fx=tests/fixtures/llama_aten
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== petrel inspect $fx/model.pt2"
"$petrel" inspect "$fx/model.pt2"
args=()
for k in 0 1 2 3; do args+=(--inputs "$fx/step$k.in.safetensors" --outputs "$tmp/out$k.safetensors"); done
echo
echo "== petrel run: 4 calls on one program; the KV cache carries over"
"$petrel" run "$fx/model.pt2" "${args[@]}"
for k in 0 1 2 3; do
    echo
    echo "-- call $k"
    "$petrel" show "$fx/step$k.in.safetensors" | grep -A1 '^input_ids'
    "$petrel" show "$tmp/out$k.safetensors"
    echo "  torch: $("$petrel" show "$fx/step$k.out.safetensors" | grep argmax | sed 's/^ *//')"
done
