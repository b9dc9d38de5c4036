#!/usr/bin/env bash
# Lookahead Parallelism smoke on one GPU (run on the device machine after tools/gpu-bench.sh
# staged the binary and model): `generate`/`bench --devices` with replicas on cuda:0, then
# `serve --devices cuda:0,cuda:0` against `serve --device cuda:0` (same text and steps).
D=${LADE_GPU_DIR:-$HOME/lade}; M=$D/SmolLM2-135M-Instruct.Q4_1.gguf; L=$D/lade; O=${OUT:-/tmp}
P="Write a short story about a robot learning to paint."
for cfg in "--device cuda:0 --no-lookahead" "--device cuda:0 --lookahead 4,3,4" "--devices cuda:0,cuda:0 --lookahead 4,3,4" "--devices cuda:0,cuda:0,cuda:0 --lookahead 7,4,7" "--device cuda:0 --lookahead 7,4,7"; do
  f="$O/multi_$(echo $cfg | tr ' ,:' '___').json"
  timeout 120 $L generate --model $M --chat -p "$P" -n 128 --temperature 0 --json -q $cfg > "$f" 2> "$f.err"; echo "$cfg rc=$?"; tail -2 "$f.err"
done
python3 - "$O" <<'PY'
import json,glob,sys
fs=sorted(glob.glob(sys.argv[1]+"/multi_*.json")); ref=None
for f in fs:
    try: d=json.load(open(f))
    except Exception as e: print(f, "unreadable", e); continue
    if "no-lookahead" in f: ref=d["token_ids"]
for f in fs:
    try: d=json.load(open(f))
    except Exception: continue
    s=d["stats"]; print(f.split("/")[-1], "tokens", len(d["token_ids"]), "steps", s["steps"], "identical_to_plain", d["token_ids"]==ref, "tok/s %.1f"%s["decode_tokens_per_s"])
PY
timeout 200 $L bench --model $M --dataset .devbin/data/humaneval.jsonl --limit 10 --max-tokens 256 -q --devices cuda:0,cuda:0 --configs "greedy;lookahead:4,3,4;lookahead:7,4,7" > $O/multi_bench.txt 2>&1; echo "bench rc=$?"; cat $O/multi_bench.txt


ask() {  # port
  python3 - "$1" <<'PY'
import json, sys, urllib.request
body = {"messages": [{"role": "user", "content": "Write a haiku about the sea."}],
        "max_tokens": 64, "temperature": 0, "seed": 1, "lookahead": {"w": 4, "n": 3, "g": 4}}
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/chat/completions",
                             data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
r = json.load(urllib.request.urlopen(req, timeout=120))
print(json.dumps({"text": r["choices"][0]["message"]["content"], "usage": r.get("usage")}))
PY
}
serve() {  # port, device flags...
  local port=$1; shift
  "$D/lade" serve --model "$M" "$@" --port "$port" > "$O/serve_$port.log" 2>&1 &
  local pid=$!
  for i in $(seq 90); do curl -sf "127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 1; done
  ask "$port" > "$O/serve_$port.json" 2>&1; echo "serve $*: $(head -c 700 "$O/serve_$port.json")"
  kill $pid; wait $pid 2>/dev/null
}
serve 18081 --device cuda:0
serve 18082 --devices cuda:0,cuda:0
python3 -c "
import json; a=json.load(open('$O/serve_18081.json')); b=json.load(open('$O/serve_18082.json'))
print('same text:', a['text']==b['text'])"
