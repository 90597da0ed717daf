#!/usr/bin/env python3
"""Train the bundled demo model: a small Llama-architecture LM on the text
made by prepare.py, on one GPU, within a fixed time budget.

    train.py --data DIR/corpus.txt --out OUTDIR [--minutes 6]

Writes OUTDIR/model/ (config.json, model.safetensors in fp32, the
tokenizer) and OUTDIR/loss.csv (step, tokens seen, train loss, held-out
loss).  The corpus is small (about 0.7 M tokens), so the model soon starts
to memorize it: the weights kept are those of the best held-out loss
(early stopping), checked every 250 steps.  Deterministic data order for a
given --seed.
"""
import argparse
import json
import math
import os
import time

import torch
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a smoke test only
    tok = Tokenizer.from_file(os.path.join(HERE, "tokenizer.json"))
    eot = tok.token_to_id("<|endoftext|>")
    docs = open(a.data, encoding="utf-8").read().split("\n\n")
    ids = []
    for d in docs:
        ids.extend(tok.encode(d).ids)
        ids.append(eot)
    data = torch.tensor(ids, dtype=torch.long)
    n_val = len(data) // 50
    train, val = data[:-n_val], data[-n_val:]
    print(f"{len(docs)} documents, {len(data)} tokens ({len(train)} train, {n_val} held out)", flush=True)
    cfg = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=4, head_dim=32, max_position_embeddings=1024,
                      rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=eot, eos_token_id=eot,
                      pad_token_id=eot, attention_dropout=0.1)
    model = LlamaForCausalLM(cfg).to(dev)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"model: {nparams / 1e6:.2f} M parameters", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
    gen = torch.Generator().manual_seed(a.seed)

    def batch(src):
        ix = torch.randint(len(src) - a.ctx - 1, (a.batch,), generator=gen)
        x = torch.stack([src[i:i + a.ctx] for i in ix])
        return x.to(dev)

    @torch.no_grad()
    def held_out():
        model.eval()
        losses = []
        for _ in range(16):
            x = batch(val)
            with torch.autocast(dev, dtype=torch.bfloat16):
                losses.append(model(input_ids=x, labels=x).loss.item())
        model.train()
        return sum(losses) / len(losses)

    budget = a.minutes * 60
    t0 = time.time()
    log = open(os.path.join(a.out, "loss.csv"), "w")
    log.write("step,tokens,train_loss,heldout_loss\n")
    step, warm = 0, 200
    best, best_step, best_state = float("inf"), 0, None
    while True:
        el = time.time() - t0
        if el > budget:
            break
        frac = el / budget
        lr = a.lr * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        x = batch(train)
        with torch.autocast(dev, dtype=torch.bfloat16):
            loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            h = held_out() if step % 250 == 0 else float("nan")
            log.write(f"{step},{(step + 1) * a.batch * a.ctx},{loss.item():.4f},{h:.4f}\n")
            log.flush()
            if step % 250 == 0:
                if h < best:
                    best, best_step = h, step
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                print(f"step {step} loss {loss.item():.3f} held-out {h:.3f} lr {lr:.2e} {el:.0f}s", flush=True)
        step += 1
    h = held_out()
    log.write(f"{step},{step * a.batch * a.ctx},{loss.item():.4f},{h:.4f}\n")
    log.close()
    print(f"done: {step} steps, final train {loss.item():.3f}, held-out {h:.3f}; "
          f"keeping step {best_step} (held-out {best:.3f})", flush=True)
    if best_state is not None and best < h:
        model.load_state_dict(best_state)
    model = model.float().cpu()
    md = os.path.join(a.out, "model")
    model.save_pretrained(md)
    tok.save(os.path.join(md, "tokenizer.json"))
    with open(os.path.join(md, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}, f)
    prompt = tok.encode("The programmer").ids
    out = model.generate(torch.tensor([prompt]), max_new_tokens=60, do_sample=True, top_k=40, temperature=0.8)
    print("sample:", tok.decode(out[0].tolist()), flush=True)


if __name__ == "__main__":
    main()
