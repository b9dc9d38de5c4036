#!/usr/bin/env python3
"""Independent f32 reference ("oracle") for the lade inference engine.

Produces, under --out:
  golden_smollm2_f32.json   -- tokenizer ids, first-step top-20 logits and a
                               64-token greedy continuation for 8 prompts, computed
                               by Hugging Face transformers on the GGUF model
                               dequantized to float32.
  tiny-llama-hf/            -- a tiny, randomly initialised, sharded fp16
                               LlamaForCausalLM safetensors directory (+ tokenizer).
  tiny_llama_hf_golden.json -- f32 logits / greedy tokens for that tiny model.

Never touches the network: HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE are forced on.
"""
import argparse
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

import gguf  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from tokenizers import pre_tokenizers  # noqa: E402
from tokenizers import decoders  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

ROUND = 5
N_GREEDY = 64
TOPK = 20
N_GREEDY_TINY = 16

# Token ids verified against llama.cpp (llama-tokenize, no BOS, parse_special).
TOKENIZER_CHECKS = [
    ("Hello world!", [19556, 905, 17]),
    ("The year 2024 had 366 days.", [504, 713, 216, 34, 32, 34, 36, 761, 216, 35, 38, 38, 2009, 30]),
    ("<|im_start|>user\nHi<|im_end|>", [1, 4093, 198, 26843, 2]),
]

TINY_SEQS = [
    [1, 4093, 198, 26843, 2, 198, 1, 520, 9531, 198],
    [504, 713, 216, 34],
    [19556],
]

DATA_DIR = "/work/shared/data"


def rnd(x):
    return round(float(x), ROUND)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def encode(tok, text):
    return tok.encode(text, add_special_tokens=False)


def check_tokenizer(tok):
    results = []
    for text, want in TOKENIZER_CHECKS:
        got = encode(tok, text)
        # Also check the default call path (add_special_tokens=True), which is what
        # a naive user would hit: it must not inject a BOS either.
        got_default = tok(text)["input_ids"]
        results.append({"text": text, "expected": want, "got": got, "got_default_call": got_default,
                        "match": got == want and got_default == want})
    return results


def fix_tokenizer(tok):
    """Make HF's GGUF-converted tokenizer behave like llama.cpp's pre='smollm'.

    llama.cpp (LLAMA_VOCAB_PRE_TYPE_SMOLLM) pre-tokenizes with the regexes
    ["\\p{N}", <GPT-2 regex>], i.e. individual digits first, then the GPT-2
    byte-level split; no prefix space; tokenizer.ggml.add_bos_token = false.
    That equals the original SmolLM2 tokenizer.json:
      pre_tokenizer = Sequence[Digits(individual_digits=True),
                               ByteLevel(add_prefix_space=False, use_regex=True)]
      post_processor = none, decoder = ByteLevel.
    """
    # Round-trip through JSON to also clean up model options the GGUF conversion set
    # (byte_fallback/fuse_unk are meaningless for byte-level BPE; the original SmolLM2
    # tokenizer.json has them off and no normalizer).
    tj = json.loads(tok.backend_tokenizer.to_str())
    tj["normalizer"] = None
    tj["model"]["byte_fallback"] = False
    tj["model"]["fuse_unk"] = False
    bt = tokenizers.Tokenizer.from_str(json.dumps(tj))
    bt.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    bt.post_processor = None
    bt.decoder = decoders.ByteLevel()
    # Rebuild as a plain fast tokenizer (no Llama-specific legacy / bos-adding logic).
    fixed = PreTrainedTokenizerFast(
        tokenizer_object=bt,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
        add_bos_token=False,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
        model_max_length=8192,
    )
    fixed.chat_template = tok.chat_template
    return fixed


def build_prompts(tok):
    mt = [json.loads(l) for l in open(os.path.join(DATA_DIR, "mt_bench.jsonl"))]
    he = [json.loads(l) for l in open(os.path.join(DATA_DIR, "humaneval.jsonl"))]

    def first(cat):
        return next(r for r in mt if r["category"] == cat)

    def chat(msg):
        return tok.apply_chat_template([{"role": "user", "content": msg}], tokenize=False,
                                       add_generation_prompt=True)

    w, m, rp = first("writing"), first("math"), first("roleplay")
    prompts = [
        ("chat_hi", "chat", "Hi", chat("Hi")),
        ("chat_" + w["id"].replace("/", "_") + "_writing", "chat", w["id"], chat(w["prompt"])),
        ("chat_" + m["id"].replace("/", "_") + "_math", "chat", m["id"], chat(m["prompt"])),
        ("chat_" + rp["id"].replace("/", "_") + "_roleplay", "chat", rp["id"], chat(rp["prompt"])),
        ("raw_humaneval_0", "raw", he[0]["id"], he[0]["prompt"]),
        ("raw_humaneval_1", "raw", he[1]["id"], he[1]["prompt"]),
        ("raw_capital_france", "raw", "literal", "The capital of France is"),
        ("raw_unicode_digits_ws", "raw", "literal",
         "Prices: 1234 \u20ac, na\u00efve caf\u00e9 \u2014  \u65e5\u672c\u8a9e\n\n  indented"),
    ]
    return [dict(name=n, kind=k, source=s, text=t) for n, k, s, t in prompts]


def topk_record(row, k=TOPK):
    vals, idx = torch.topk(row.float(), k)
    return {"ids": [int(i) for i in idx], "logits": [rnd(v) for v in vals]}


@torch.no_grad()
def greedy(model, ids, n):
    """Manual greedy loop with KV cache; never stops at EOS."""
    inp = torch.tensor([ids], dtype=torch.long)
    out = model(input_ids=inp, use_cache=True)
    past = out.past_key_values
    last = out.logits[0, -1].float()
    first_row = out.logits[0, 0].float()
    first_last = last.clone()
    gen, margins, top1 = [], [], []
    for step in range(n):
        v2, i2 = torch.topk(last, 2)
        nxt = int(i2[0])
        gen.append(nxt)
        margins.append(rnd(v2[0] - v2[1]))
        top1.append(rnd(v2[0]))
        if step == n - 1:
            break
        out = model(input_ids=torch.tensor([[nxt]], dtype=torch.long), past_key_values=past,
                    use_cache=True)
        past = out.past_key_values
        last = out.logits[0, -1].float()
    return first_row, first_last, gen, margins, top1


@torch.no_grad()
def recompute_check(model, ids, gen):
    """Re-run prompt+continuation without cache; argmax at each position must agree."""
    full = torch.tensor([ids + gen], dtype=torch.long)
    logits = model(input_ids=full, use_cache=False).logits[0].float()
    preds = logits[len(ids) - 1: len(ids) - 1 + len(gen)].argmax(-1).tolist()
    return sum(int(a == b) for a, b in zip(preds, gen))


@torch.no_grad()
def weight_checks(model, gguf_path):
    """Cheap sanity checks of the dequantized weights against the raw GGUF."""
    r = gguf.GGUFReader(gguf_path)
    t = {x.name: x for x in r.tensors}
    res = {}
    emb = gguf.quants.dequantize(t["token_embd.weight"].data, t["token_embd.weight"].tensor_type)
    emb = torch.from_numpy(np.asarray(emb, dtype=np.float32)).reshape(model.config.vocab_size, -1)
    res["embed_max_abs_diff_vs_gguf_dequant"] = float((model.model.embed_tokens.weight - emb).abs().max())
    res["gguf_has_output_weight"] = "output.weight" in t
    lm = model.lm_head.weight
    res["lm_head_tied_to_embed"] = bool(lm.data_ptr() == model.model.embed_tokens.weight.data_ptr()
                                        or torch.equal(lm, model.model.embed_tokens.weight))
    v = t["blk.0.attn_v.weight"]
    vd = torch.from_numpy(np.asarray(gguf.quants.dequantize(v.data, v.tensor_type), dtype=np.float32))
    res["blk0_attn_v_max_abs_diff_vs_gguf_dequant"] = float(
        (model.model.layers[0].self_attn.v_proj.weight - vd.reshape(model.model.layers[0].self_attn.v_proj.weight.shape)).abs().max())
    return res


def make_smollm2_golden(model_path, out_dir):
    d, f = os.path.split(os.path.abspath(model_path))
    t0 = time.time()
    raw_tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    check_raw = check_tokenizer(raw_tok)
    tok = fix_tokenizer(raw_tok)
    check_fixed = check_tokenizer(tok)
    if not all(c["match"] for c in check_fixed):
        print(json.dumps(check_fixed, indent=1), file=sys.stderr)
        raise SystemExit("tokenizer still disagrees with llama.cpp ids after fix")

    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    print(f"loaded in {time.time() - t0:.1f}s", file=sys.stderr)
    cfg = model.config
    wchk = weight_checks(model, model_path)
    print("weight checks:", wchk, file=sys.stderr)

    prompts = build_prompts(tok)
    # Does the unfixed HF tokenizer (encode without special tokens) differ on our prompts?
    raw_vs_fixed = {p["name"]: encode(raw_tok, p["text"]) == encode(tok, p["text"]) for p in prompts}
    records = []
    for p in prompts:
        ts = time.time()
        ids = encode(tok, p["text"])
        _, first_last, gen, margins, top1 = greedy(model, ids, N_GREEDY)
        agree = recompute_check(model, ids, gen)
        rec = dict(p)
        rec.update(
            n_prompt_tokens=len(ids),
            prompt_ids=ids,
            first_top20=topk_record(first_last),
            greedy_ids=gen,
            greedy_text=tok.decode(gen),
            greedy_margins=margins,
            greedy_top1_logit=top1,
            greedy_min_margin=min(margins),
            nocache_recompute_argmax_agree=agree,
        )
        records.append(rec)
        print(f"{p['name']}: {len(ids)} prompt toks, min margin {min(margins):.4f}, "
              f"recompute agree {agree}/{N_GREEDY}, {time.time() - ts:.1f}s", file=sys.stderr)

    meta = {
        "description": "HF transformers f32 reference for lade; GGUF weights dequantized to float32 by "
                       "transformers' GGUF loader, eager attention, CPU, 1 thread.",
        "model_file": os.path.basename(model_path),
        "model_sha256": sha256(model_path),
        "dtype": "float32",
        "device": "cpu",
        "attn_implementation": "eager",
        "float_rounding": f"all logits/margins rounded to {ROUND} decimals (Python round of the f32 value)",
        "greedy": f"{N_GREEDY} tokens, argmax of last row each step, KV cache via past_key_values, "
                  "no EOS stop, ties broken by torch.topk",
        "prompt_encoding": "tokenizer.encode(text, add_special_tokens=False): no BOS added; special "
                           "tokens written in the text (e.g. <|im_start|>) are parsed",
        "chat_template": "the GGUF's tokenizer.chat_template, apply_chat_template(messages=[user], "
                         "add_generation_prompt=True, tokenize=False)",
        "model_config": {k: getattr(cfg, k, None) for k in (
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "rope_theta", "rms_norm_eps", "tie_word_embeddings",
            "max_position_embeddings", "rope_scaling")},
        "weight_checks": wchk,
        "tokenizer_check": {
            "hf_gguf_tokenizer_out_of_the_box": check_raw,
            "hf_gguf_tokenizer_out_of_the_box_matches": all(c["match"] for c in check_raw),
            "fix_applied": "backend pre_tokenizer := Sequence[Digits(individual_digits=True), "
                           "ByteLevel(add_prefix_space=False, use_regex=True)]; post_processor := None "
                           "(HF's conversion added a BOS <|im_start|>=1 template although GGUF "
                           "add_bos_token=false); decoder := ByteLevel",
            "unfixed_encode_no_special_equals_fixed_on_prompts": raw_vs_fixed,
            "after_fix": check_fixed,
            "after_fix_matches": all(c["match"] for c in check_fixed),
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gguf": importlib.metadata.version("gguf"),
            "tokenizers": tokenizers.__version__,
            "numpy": np.__version__,
        },
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "special_ids": {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2},
    }
    write_json(os.path.join(out_dir, "golden_smollm2_f32.json"), {"meta": meta, "records": records})
    return tok


def write_json(path, obj):
    """Compact but readable: one key per line at the top levels, lists inline."""
    def enc(o, ind):
        pad = " " * ind
        if isinstance(o, dict):
            if not o:
                return "{}"
            items = [f'{pad}  {json.dumps(k)}: {enc(v, ind + 2)}' for k, v in o.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(o, list) and any(isinstance(x, (dict, list)) for x in o):
            items = [pad + "  " + enc(x, ind + 2) for x in o]
            return "[\n" + ",\n".join(items) + "\n" + pad + "]"
        return json.dumps(o, ensure_ascii=False)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(enc(obj, 0) + "\n")
    json.load(open(path, encoding="utf-8"))  # round-trip sanity
    print(f"wrote {path} ({os.path.getsize(path)} bytes)", file=sys.stderr)


def make_tiny_hf(tok, out_dir):
    tiny_dir = os.path.join(out_dir, "tiny-llama-hf")
    if os.path.isdir(tiny_dir):
        shutil.rmtree(tiny_dir)
    cfg = LlamaConfig(
        vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
        initializer_range=0.2, hidden_act="silu", attention_bias=False, mlp_bias=False,
        bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )
    torch.manual_seed(1234)
    model = LlamaForCausalLM(cfg)  # random init N(0, 0.2), norms = 1
    # Give the RMSNorm weights non-trivial values so a loader that ignores them fails the test.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    model = model.to(torch.float16)
    model.config.torch_dtype = torch.float16
    model.save_pretrained(tiny_dir, safe_serialization=True, max_shard_size="2MB")
    # chat_template goes into tokenizer_config.json (classic layout, no chat_template.jinja);
    # tokenizer.json is rewritten compactly (pretty-printing costs ~2 MB).
    tok.save_pretrained(tiny_dir, save_jinja_files=False)
    tok.backend_tokenizer.save(os.path.join(tiny_dir, "tokenizer.json"), pretty=False)
    # transformers 4.57 writes "dtype"; also write the legacy "torch_dtype" key for other readers.
    cpath = os.path.join(tiny_dir, "config.json")
    c = json.load(open(cpath))
    c.setdefault("torch_dtype", "float16")
    c.setdefault("dtype", "float16")
    json.dump(c, open(cpath, "w"), indent=2, sort_keys=True)

    files = sorted(os.listdir(tiny_dir))
    shards = [x for x in files if x.endswith(".safetensors")]
    assert "model.safetensors.index.json" in files and len(shards) >= 2, files
    total = sum(os.path.getsize(os.path.join(tiny_dir, x)) for x in files)
    print(f"tiny dir: {files}, {total} bytes", file=sys.stderr)

    # The saved tokenizer must reproduce the llama.cpp ids when loaded the ordinary way.
    tok_check = check_tokenizer(AutoTokenizer.from_pretrained(tiny_dir))
    assert all(x["match"] for x in tok_check), tok_check
    tcfg = json.load(open(os.path.join(tiny_dir, "tokenizer_config.json")))
    assert tcfg.get("chat_template") == tok.chat_template

    # Reload from disk (fp16) and upcast to f32 for the forward.
    m = LlamaForCausalLM.from_pretrained(tiny_dir, torch_dtype=torch.float16, attn_implementation="eager")
    m = m.float().eval()
    records = []
    with torch.no_grad():
        for ids in TINY_SEQS:
            logits = m(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()
            first_row, _, gen, margins, top1 = greedy(m, ids, N_GREEDY_TINY)
            records.append({
                "input_ids": ids,
                "first_pos_top20": topk_record(logits[0]),
                "last_pos_top20": topk_record(logits[-1]),
                "greedy_ids": gen,
                "greedy_margins": margins,
                "greedy_top1_logit": top1,
            })
    meta = {
        "description": "Tiny random LlamaForCausalLM saved as sharded fp16 safetensors; logits computed "
                       "in float32 after loading the fp16 weights and upcasting (eager attention, CPU).",
        "model_dir": "tiny-llama-hf",
        "files": {x: sha256(os.path.join(tiny_dir, x)) for x in files},
        "config": {k: c.get(k) for k in ("vocab_size", "hidden_size", "intermediate_size",
                                         "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                                         "max_position_embeddings", "rope_theta", "rms_norm_eps",
                                         "tie_word_embeddings", "torch_dtype", "initializer_range")},
        "total_bytes": total,
        "tokenizer": "SmolLM2 tokenizer (fixed as in golden_smollm2_f32.json), chat_template in "
                     "tokenizer_config.json; reloaded with AutoTokenizer it reproduces the llama.cpp ids: "
                     + str(all(x["match"] for x in tok_check)),
        "seed": 1234,
        "init": "LlamaForCausalLM default init with initializer_range=0.2; every *norm.weight set to "
                "1 + 0.1*randn; then cast to float16",
        "rotary_layout": "HF half-split (NeoX style) q_proj/k_proj, not permuted",
        "float_rounding": f"rounded to {ROUND} decimals",
        "greedy": f"{N_GREEDY_TINY} tokens, argmax, KV cache, no EOS stop",
        "dtype": "float32 (weights stored fp16)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    write_json(os.path.join(out_dir, "tiny_llama_hf_golden.json"), {"meta": meta, "records": records})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="path to SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", required=True, help="fixtures directory (tests/fixtures/)")
    ap.add_argument("--skip-tiny", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    tok = make_smollm2_golden(args.model, args.out)
    if not args.skip_tiny:
        make_tiny_hf(tok, args.out)
    print(f"total runtime {time.time() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
