#!/usr/bin/env bash
# Builds the embedded default model's draft corpus, assets/draft-corpus/SmolLM2-135M-Instruct.corpus:
# the model's greedy outputs (CPU, --dtype auto, each ended at its end-of-generation token, at
# most 256 tokens) on prompts no benchmark in docs/benchmarks.md decodes: MT-Bench 41-80 in the
# chat template and HumanEval 41-164 raw (the benchmarks use the first 40 of each).
# Needs the full prompt sets: ../shared/data beside the checkout, or $LADE_DATA_DIR.
# Rebuild lade afterwards (the corpus is embedded with include_bytes!).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LADE_DATA_DIR:-../shared/data}
OUT=assets/draft-corpus/SmolLM2-135M-Instruct.corpus
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cargo build --release
LADE=target/release/lade
"$LADE" draft-corpus --dataset "$DATA/mt_bench.jsonl" --chat --skip 40 --out "$TMP/c.corpus"
"$LADE" draft-corpus --dataset "$DATA/humaneval.jsonl" --skip 40 --append --out "$TMP/c.corpus"
mv "$TMP/c.corpus" "$OUT"
sha256sum "$OUT"
