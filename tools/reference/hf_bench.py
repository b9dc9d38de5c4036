#!/usr/bin/env python3
"""Hugging Face transformers baseline for `lade bench` on a GPU.

Loads the same GGUF file with transformers (dequantized to float16, sdpa attention), runs
`generate` greedily for the same prompt token ids lade used (`lade tokenize [--chat] --json`),
batch 1, a fixed number of new tokens (end-of-sequence ignored, as `lade bench` does), and
prints per-prompt and median tokens/s as JSON. Modes: `greedy` and `pld` (transformers'
prompt-lookup decoding, `prompt_lookup_num_tokens=10`).

usage: hf_bench.py MODEL_DIR GGUF_NAME PROMPTS.json [--max-new-tokens 256] [--modes greedy,pld]
PROMPTS.json: [{"id": ..., "ids": [...]}, ...]
"""
import argparse
import json
import statistics
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("gguf_name")
    ap.add_argument("prompts")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--modes", default="greedy,pld")
    ap.add_argument("--label", default="")
    ap.add_argument("--limit", type=int, default=0, help="only the first K prompts")
    args = ap.parse_args()

    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(
        args.model_dir,
        gguf_file=args.gguf_name,
        torch_dtype=torch.float16,
        attn_implementation="sdpa",
    ).to("cuda").eval()
    load_s = time.time() - t0
    prompts = json.load(open(args.prompts))
    if args.limit:
        prompts = prompts[: args.limit]
    n = args.max_new_tokens
    out = {"label": args.label, "device": torch.cuda.get_device_name(0), "load_s": load_s,
           "torch": torch.__version__, "modes": {}}
    for mode in args.modes.split(","):
        extra = {"prompt_lookup_num_tokens": 10} if mode == "pld" else {}
        rates, outputs = [], []
        # one untimed warm-up generation
        ids = torch.tensor([prompts[0]["ids"]], device="cuda")
        model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False, **extra)
        for p in prompts:
            ids = torch.tensor([p["ids"]], device="cuda")
            attn = torch.ones_like(ids)
            torch.cuda.synchronize()
            t = time.time()
            with torch.no_grad():
                g = model.generate(ids, attention_mask=attn, max_new_tokens=n, min_new_tokens=n,
                                   do_sample=False, pad_token_id=0, **extra)
            torch.cuda.synchronize()
            dt = time.time() - t
            new = g[0, ids.shape[1]:].tolist()
            rates.append(len(new) / dt)
            outputs.append(new)
        out["modes"][mode] = {
            "median_tok_s": statistics.median(rates),
            "per_prompt_tok_s": rates,
            "first_tokens": [o[:64] for o in outputs],
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
