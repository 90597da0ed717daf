#!/usr/bin/env bash
# `make demo`: run a bundled exported model (a tiny random-weight Llama with
# a static KV cache, exported by torch.export) for two calls -- a 3-token
# prefill, then 3 more tokens continuing from the cache -- print its
# outputs, and check them against torch's.
set -euo pipefail
petrel=${1:-build/petrel}
fx=tests/fixtures/model_llama_aten
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== petrel inspect $fx/model.pt2"
"$petrel" inspect "$fx/model.pt2"
echo
echo "== petrel run (2 calls on one program; the KV cache carries over)"
"$petrel" run "$fx/model.pt2" \
    --inputs "$fx/step0.in.safetensors" --outputs "$tmp/out0.safetensors" \
    --inputs "$fx/step1.in.safetensors" --outputs "$tmp/out1.safetensors"
for k in 0 1; do
    echo
    echo "-- call $k inputs"
    "$petrel" show "$fx/step$k.in.safetensors"
    echo "-- call $k outputs (petrel)"
    "$petrel" show "$tmp/out$k.safetensors"
    echo "-- call $k outputs (torch, recorded when the model was exported)"
    "$petrel" show "$fx/step$k.out.safetensors" | grep argmax
done
