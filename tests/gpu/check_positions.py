"""Greedy generation across the CUDA executor's ranges of positions.

A tiny random-weight Llama (four query heads per KV head, a KV cache of 640
positions, float32) continues a prompt of about 500 tokens past position
512.  There the runner's position hint (petrel_program_hint_position) moves
the decode step into another range: another captured graph, and the decode
attention with four query rows per warp instead of one.  The CUDA ids must
equal the CPU backend's, token for token, on both sides of the boundary.

usage: check_positions.py PETREL PYTHON   (PYTHON: one with torch and
transformers, for the export; run from the repository root)"""
import json
import os
import subprocess
import sys
import tempfile

from fixture_tokenizer import fixture_tokenizer

CACHE, BOUNDARY, GEN = 640, 512, 48


def run(cmd, stdin=None):
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd[:3])}: {r.stderr.strip()[-400:]}")
    return r.stdout


def main():
    petrel, python = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        tok = os.path.join(tmp, "tokenizer.json")
        vocab = fixture_tokenizer("llama", tok) + 1
        cfg = os.path.join(tmp, "config.json")
        json.dump(dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=64, intermediate_size=128,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                       max_position_embeddings=CACHE, rope_theta=10000.0, tie_word_embeddings=True,
                       initializer_range=0.5, vocab_size=vocab), open(cfg, "w"))
        model = os.path.join(tmp, "tiny.pt2")
        run([python, "python/petrel_export.py", "--config", cfg, "--random-weights", "--seed", "1", "--tokenizer", tok,
             "--max-cache-len", str(CACHE), "--max-chunk", "64", "--logits", "all", "-o", model])
        # a prompt that ends a little before the boundary
        sentence = "The quick brown fox jumps over the lazy dog. "
        text, plen = "", 0
        while True:
            n = len(run([petrel, "tokenize", "--tokenizer", tok, "--no-special"], text + sentence).split())
            if n > BOUNDARY - 16:
                break
            text, plen = text + sentence, n
        got = {}
        for be in ("cuda", "cpu"):
            out = os.path.join(tmp, f"ids.{be}")
            run([petrel, "generate", "-m", model, "-p", text, "-n", str(GEN), "--temp", "0", "--ignore-eos", "--raw",
                 "--backend", be, "--ids-out", out])
            got[be] = open(out).read().split()
        a, b = got["cuda"], got["cpu"]
        same = len(a) == GEN and a == b
        first = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), None)
        print(f"{'ok  ' if same else 'FAIL'} prompt {plen} tokens, {GEN} generated (positions {plen}-{plen + GEN - 1}, "
              f"boundary {BOUNDARY}): cuda {'=' if same else '!='} cpu"
              + ("" if same else f", first difference at generated id {first} of {len(a)} / {len(b)}"))
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
