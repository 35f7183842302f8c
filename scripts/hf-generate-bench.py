#!/usr/bin/env python3
"""Greedy generation tokens/s of Hugging Face transformers' `generate` on a model folder, per batch
size: the reference the GPU loop check (scripts/gpu-loop-check.sh) puts beside `cycleqd generate
bench` on the same model, dtype and batch sizes. Prompts are random token ids of a fixed length;
every sequence generates exactly --new-tokens tokens (min_new_tokens = max_new_tokens).

Prints one line per batch: batch prompt_tokens generated seconds tokens/s, then the peak CUDA memory
PyTorch allocated."""
import argparse
import time

import torch
from transformers import AutoModelForCausalLM


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    a = ap.parse_args()
    dtype = getattr(torch, a.dtype)
    t0 = time.perf_counter()
    try:
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, device_map="cuda")
    except TypeError:  # transformers before `dtype` replaced `torch_dtype`
        model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=dtype, device_map="cuda")
    model.eval()
    print(f"transformers: loaded {a.model} ({a.dtype}) in {time.perf_counter() - t0:.1f} s", flush=True)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    print("batch  prompt_tokens  generated  seconds  tokens/s", flush=True)
    for b in (int(x) for x in a.batches.split(",")):
        ids = torch.randint(0, min(vocab, 128000), (b, a.prompt_tokens), generator=gen).cuda()
        mask = torch.ones_like(ids)
        with torch.no_grad():
            model.generate(ids[:, :8], attention_mask=mask[:, :8], max_new_tokens=4, do_sample=False, pad_token_id=0)
            best = None
            for _ in range(a.repeats):
                torch.cuda.synchronize()
                t = time.perf_counter()
                out = model.generate(ids, attention_mask=mask, max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens,
                                     do_sample=False, pad_token_id=0)
                torch.cuda.synchronize()
                dt = time.perf_counter() - t
                produced = (out.shape[1] - a.prompt_tokens) * b
                if best is None or produced / dt > best[1] / best[0]:
                    best = (dt, produced)
        dt, produced = best
        print(f"{b:5d}  {a.prompt_tokens * b:13d}  {produced:9d}  {dt:7.3f}  {produced / dt:8.1f}", flush=True)
    print(f"transformers: peak CUDA memory allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB", flush=True)


if __name__ == "__main__":
    main()
