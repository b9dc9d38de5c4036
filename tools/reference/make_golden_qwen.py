#!/usr/bin/env python3
"""Independent f32 reference ("oracle") for lade on Qwen2.5-Coder-0.5B-Instruct Q4_K_M.

Writes, under --out (normally tests/fixtures/):
  golden_qwen2_f32.json      -- for 8 prompts (4 chat, rendered by transformers' Jinja
                                chat template; 4 raw, mostly code): prompt ids, the
                                top-20 next-token logits after the prompt and a 64-token
                                greedy continuation with per-step top1-top2 margins,
                                computed by Hugging Face transformers on the GGUF's
                                weights dequantized to float32.
  tiny-qwen2-hf/             -- a tiny, randomly initialised Qwen2ForCausalLM (random q/k/v
                                biases, tied embeddings) saved as fp16 safetensors with the
                                SmolLM2 tokenizer of tiny-llama-hf/ (--tiny-only: just this).
  tiny_qwen2_hf_golden.json  -- its f32 logits / greedy tokens.
  tokenizer_qwen2.json       -- token ids of texts that stress the tokenizer (code,
                                digits, CJK, emoji, CRLF, contractions, whitespace runs,
                                special tokens), from the tokenizer transformers builds
                                out of the GGUF metadata.

Never touches the network (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE are forced on). Shares its
helpers with make_golden.py (same venv: requirements.txt).
"""
import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import time

import make_golden as mg  # noqa: E402  (sets the offline env vars, imports torch)
from make_golden import rnd, sha256, topk_record, greedy, recompute_check, write_json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
import gguf  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

N_GREEDY = mg.N_GREEDY

# Texts whose ids the tokenizer test compares; each stresses one part of the Qwen2
# pre-tokenizer (regex, NFC, byte-level) or the special-token matching.
TOKENIZER_TEXTS = [
    ("hello", "Hello world"),
    ("digits", "The year 2024 had 366 days; pi = 3.14159, 1,000,000 and 0x1F."),
    ("contractions", "I'm sure you're right, we'll see. DON'T, it's HE'LL, they've, I'd"),
    ("code_python", "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n"),
    ("code_c", "int main(void) {\n\tprintf(\"%d\\n\", a[i] >> 2);\n\treturn 0;\n}"),
    ("whitespace_runs", "a  b   c    d\t\tx \n\n\n   y     \n  \t  z   "),
    ("crlf", "line one\r\nline two\r\n\r\n  indented\r\nend"),
    ("cjk", "日本語のテキストと中文文本，还有한국어 텍스트。"),
    ("emoji", "Emoji: 😀👍🏽 🇫🇷 👨‍👩‍👧 ✨!"),
    ("accents_nfc", "naïve café — Ångström; decomposed: cafe\u0301 A\u030angstro\u0308m"),
    ("special_tokens", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"),
    ("endoftext_fim", "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>pass<|endoftext|>"),
    ("tool_call", "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call><|im_end|>"),
    ("mixed", "Prices: 1234 €, naïve café —  日本語\n\n  indented"),
    ("punct_runs", "Hmm...!!! ??? ---- ==> <= != `code` \"quote\" 'single' (parens) [x]{y}"),
]

SYSTEM_CODER = "You are a careful Python programmer. Answer with code only."


def build_prompts(tok):
    mt = [json.loads(l) for l in open(os.path.join(mg.DATA_DIR, "mt_bench.jsonl"))]
    he = [json.loads(l) for l in open(os.path.join(mg.DATA_DIR, "humaneval.jsonl"))]

    def first(cat):
        return next(r for r in mt if r["category"] == cat)

    def chat(msg, system=None):
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": msg}]
        return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    w, c = first("writing"), first("coding")
    fizz = "Write a Python function that returns the FizzBuzz sequence from 1 to n as a list of strings."
    prompts = [
        ("chat_hi", "chat", "Hi", None, "Hi"),
        ("chat_" + w["id"].replace("/", "_") + "_writing", "chat", w["id"], None, w["prompt"]),
        ("chat_" + c["id"].replace("/", "_") + "_coding", "chat", c["id"], None, c["prompt"]),
        ("chat_fizzbuzz_system", "chat", "literal", SYSTEM_CODER, fizz),
        ("raw_humaneval_0", "raw", he[0]["id"], None, he[0]["prompt"]),
        ("raw_humaneval_2", "raw", he[2]["id"], None, he[2]["prompt"]),
        ("raw_quicksort", "raw", "literal", None, "# Quicksort in Python\ndef quicksort(arr):\n"),
        ("raw_unicode_digits_ws", "raw", "literal", None,
         "Prices: 1234 \u20ac, na\u00efve caf\u00e9 \u2014  \u65e5\u672c\u8a9e\n\n  indented"),
    ]
    out = []
    for n, k, s, system, msg in prompts:
        text = chat(msg, system) if k == "chat" else msg
        out.append(dict(name=n, kind=k, source=s, system=system, user=msg if k == "chat" else None,
                        text=text))
    return out


def complete_added_tokens(tok, model_path):
    """Registers the GGUF's control tokens (type 3) as special added tokens and its
    user-defined ones (type 4) as plain added tokens, where transformers' GGUF conversion left
    them out.

    The original Qwen2.5 tokenizer.json lists every `<|...|>` token (151643-151664) as a special
    added token and `<tool_call>`/`</tool_call>` as plain added tokens, and llama.cpp matches
    them likewise (control tokens when special tokens are parsed, user-defined always).
    transformers 4.57's conversion registers only some of them (`<|fim_prefix|>` and the other
    FIM/repo tokens came out as plain text), so this restores the original's behaviour. Returns
    the tokens added.
    """
    from tokenizers import AddedToken
    r = gguf.GGUFReader(model_path)
    f, t = r.fields["tokenizer.ggml.token_type"], r.fields["tokenizer.ggml.tokens"]
    have = set(tok.get_added_vocab())
    special, plain = [], []
    for i, idx in enumerate(f.data):
        ty = int(f.parts[idx][0])
        if ty not in (3, 4):
            continue
        text = bytes(t.parts[t.data[i]]).decode("utf-8")
        if text in have:
            continue
        (special if ty == 3 else plain).append((i, text))
    tok.add_tokens([AddedToken(x, special=True, normalized=False) for _, x in special], special_tokens=True)
    tok.add_tokens([AddedToken(x, special=False, normalized=False) for _, x in plain])
    for i, x in special + plain:
        if tok.convert_tokens_to_ids(x) != i:
            raise SystemExit(f"added token {x!r} got id {tok.convert_tokens_to_ids(x)}, GGUF says {i}")
    return [x for _, x in special + plain]


def tokenizer_fixture(tok, model_path):
    before = {name: tok.encode(text, add_special_tokens=False) for name, text in TOKENIZER_TEXTS}
    added = complete_added_tokens(tok, model_path)
    cases = []
    for name, text in TOKENIZER_TEXTS:
        ids = tok.encode(text, add_special_tokens=False)
        default_ids = tok(text)["input_ids"]
        if default_ids != ids:
            raise SystemExit(f"{name}: the default call adds tokens: {default_ids} vs {ids}")
        if tok.decode(ids) != text and name not in ("accents_nfc",):
            raise SystemExit(f"{name}: decode does not round-trip: {tok.decode(ids)!r}")
        cases.append({"name": name, "text": text, "ids": ids,
                      "pieces": tok.convert_ids_to_tokens(ids)})
    bt = json.loads(tok.backend_tokenizer.to_str())
    meta = {
        "description": "Token ids from the tokenizer Hugging Face transformers builds out of the GGUF "
                       "metadata (AutoTokenizer.from_pretrained(dir, gguf_file=...)), encode(text, "
                       "add_special_tokens=False); the default call (add_special_tokens=True) gives the "
                       "same ids (no BOS).",
        "model_file": os.path.basename(model_path),
        "added_tokens_fix": {
            "added": added,
            "why": "transformers' GGUF conversion left these GGUF control (special) / user-defined "
                   "tokens out of the added tokens; the original Qwen2.5 tokenizer.json and llama.cpp "
                   "match them in the text",
            "cases_changed_by_fix": [c["name"] for c in cases if c["ids"] != before[c["name"]]],
        },
        "backend": {"normalizer": bt.get("normalizer"), "pre_tokenizer": bt.get("pre_tokenizer"),
                    "post_processor": bt.get("post_processor"), "decoder": bt.get("decoder")},
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
    }
    return {"meta": meta, "cases": cases}


@torch.no_grad()
def weight_checks(model, gguf_path):
    """The dequantized weights equal gguf-py's dequantization of the raw tensors."""
    r = gguf.GGUFReader(gguf_path)
    t = {x.name: x for x in r.tensors}

    def deq(name):
        x = t[name]
        return torch.from_numpy(np.asarray(gguf.quants.dequantize(x.data, x.tensor_type), dtype=np.float32))

    res = {"gguf_tensor_types": sorted({x.tensor_type.name for x in r.tensors})}
    res["embed_max_abs_diff"] = float((model.model.embed_tokens.weight - deq("token_embd.weight").reshape(
        model.model.embed_tokens.weight.shape)).abs().max())
    att = model.model.layers[0].self_attn
    res["blk0_v_max_abs_diff"] = float((att.v_proj.weight - deq("blk.0.attn_v.weight").reshape(
        att.v_proj.weight.shape)).abs().max())
    res["blk0_q_bias_max_abs_diff"] = float((att.q_proj.bias - deq("blk.0.attn_q.bias")).abs().max())
    res["gguf_has_output_weight"] = "output.weight" in t
    return res


def make_golden(model_path, out_dir, tokenizer_only=False):
    d, f = os.path.split(os.path.abspath(model_path))
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    write_json(os.path.join(out_dir, "tokenizer_qwen2.json"), tokenizer_fixture(tok, model_path))
    if tokenizer_only:
        return

    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    print(f"loaded in {time.time() - t0:.1f}s", file=sys.stderr)
    cfg = model.config
    wchk = weight_checks(model, model_path)
    print("weight checks:", wchk, file=sys.stderr)

    records = []
    for p in build_prompts(tok):
        ts = time.time()
        ids = tok.encode(p["text"], add_special_tokens=False)
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
                       "transformers' GGUF loader (Qwen2ForCausalLM), eager attention, CPU.",
        "model_file": os.path.basename(model_path),
        "model_sha256": sha256(model_path),
        "dtype": "float32",
        "device": "cpu",
        "attn_implementation": "eager",
        "float_rounding": f"all logits/margins rounded to {mg.ROUND} decimals",
        "greedy": f"{N_GREEDY} tokens, argmax of last row each step, KV cache via past_key_values, "
                  "no EOS stop, ties broken by torch.topk",
        "prompt_encoding": "tokenizer.encode(text, add_special_tokens=False): no BOS; special tokens "
                           "written in the text are parsed",
        "chat_template": "the GGUF's tokenizer.chat_template through transformers' apply_chat_template"
                         "(messages=[system?, user], add_generation_prompt=True, tokenize=False); "
                         "`system` and `user` of a chat record are the messages",
        "model_config": {k: getattr(cfg, k, None) for k in (
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "rope_theta", "rms_norm_eps", "tie_word_embeddings",
            "max_position_embeddings", "rope_scaling")},
        "weight_checks": wchk,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gguf": importlib.metadata.version("gguf"),
            "tokenizers": tokenizers.__version__,
            "numpy": np.__version__,
        },
        "torch_threads": torch.get_num_threads(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "special_ids": {t: tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")},
    }
    write_json(os.path.join(out_dir, "golden_qwen2_f32.json"), {"meta": meta, "records": records})


def make_tiny_qwen2(out_dir):
    """Hugging Face layout: half-split rotary q/k rows, biases, tied output."""
    import shutil
    from transformers import Qwen2Config, Qwen2ForCausalLM
    tiny_dir = os.path.join(out_dir, "tiny-qwen2-hf")
    if os.path.isdir(tiny_dir):
        shutil.rmtree(tiny_dir)
    cfg = Qwen2Config(
        vocab_size=49152, hidden_size=16, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=4, max_position_embeddings=256,
        rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
        initializer_range=0.2, hidden_act="silu", use_sliding_window=False,
        bos_token_id=0, eos_token_id=2, pad_token_id=2,
    )
    torch.manual_seed(4321)
    model = Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif n.endswith(".bias"):
                # Zero-initialised by default: make a loader that drops or misplaces them fail.
                p.copy_(0.5 * torch.randn_like(p))
    model = model.to(torch.float16)
    model.save_pretrained(tiny_dir, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(out_dir, "tiny-llama-hf", f), os.path.join(tiny_dir, f))
    c = json.load(open(os.path.join(tiny_dir, "config.json")))
    assert c["model_type"] == "qwen2" and c["tie_word_embeddings"] is True, c
    files = sorted(os.listdir(tiny_dir))
    m = Qwen2ForCausalLM.from_pretrained(tiny_dir, torch_dtype=torch.float16, attn_implementation="eager")
    m = m.float().eval()
    assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()
    records = []
    with torch.no_grad():
        for ids in mg.TINY_SEQS:
            logits = m(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()
            _, _, gen, margins, top1 = greedy(m, ids, mg.N_GREEDY_TINY)
            records.append({
                "input_ids": ids,
                "first_pos_top20": topk_record(logits[0]),
                "last_pos_top20": topk_record(logits[-1]),
                "greedy_ids": gen,
                "greedy_margins": margins,
            })
    meta = {
        "description": "Tiny random Qwen2ForCausalLM (q/k/v biases 0.5*randn, tied embeddings, GQA 2:1) "
                       "saved as fp16 safetensors; logits in float32 after upcasting (eager, CPU).",
        "model_dir": "tiny-qwen2-hf",
        "files": {x: sha256(os.path.join(tiny_dir, x)) for x in files},
        "seed": 4321,
        "rotary_layout": "HF half-split (NeoX style) q_proj/k_proj and their biases, not permuted",
        "greedy": f"{mg.N_GREEDY_TINY} tokens, argmax, KV cache, no EOS stop",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    write_json(os.path.join(out_dir, "tiny_qwen2_hf_golden.json"), {"meta": meta, "records": records})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="path to the Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF")
    ap.add_argument("--out", required=True, help="fixtures directory (tests/fixtures/)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tiny-only", action="store_true", help="write the tiny Qwen2 checkpoint only")
    ap.add_argument("--tokenizer-only", action="store_true",
                    help="write tokenizer_qwen2.json only (no model forward)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    if not args.tokenizer_only:
        make_tiny_qwen2(args.out)
    if not args.tiny_only:
        make_golden(args.model, args.out, args.tokenizer_only)
    print(f"total runtime {time.time() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
