#!/usr/bin/env python3
"""Bounded load test of `lade serve` on the loopback interface (Python stdlib only).

Starts `lade serve --port 0` itself, then CLIENTS threads each send REQUESTS streaming chat
requests one after another (greedy, `ignore_eos`, exactly MAX_TOKENS tokens each). A 429 is
a deliberate answer of the bounded queue: the client waits for Retry-After and sends the same
request again. Checks that nothing is lost or corrupted (every request ends with [DONE],
finish_reason "length" and MAX_TOKENS completion tokens; every answer to the same prompt is
identical; the server's counters agree), then prints latency percentiles and throughput.
Stops by itself: the whole run is bounded by --deadline seconds. Exit status 1 on any error.

  python3 tools/server/loadtest.py --lookahead off
  python3 tools/server/loadtest.py --lookahead 4,3,4 --json out.json
"""

import argparse
import http.client
import json
import os
import sys
import threading
import time
from urllib.parse import urlparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverproc import LadeServer, metric  # noqa: E402

PROMPTS = [
    "Write a haiku about the sea.",
    "Explain how a hash map works.",
    "List five uses of vinegar.",
    "What is the boiling point of water?",
    "Give me a tip for learning to cook.",
    "Describe a cat in one sentence.",
    "Why is the sky blue?",
    "Suggest a name for a small bakery.",
]


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency, self.ttft, self.errors = [], [], []
        self.rejected = 0
        self.ok = 0
        self.texts = {}


def one_request(host, port, prompt, max_tokens, deadline):
    """(status, retry_after, ttft, latency, text, finish, usage) of one streaming request."""
    body = json.dumps({
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
        "stream": True, "stream_options": {"include_usage": True},
    })
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=max(1.0, deadline - time.monotonic()))
    try:
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            retry = resp.getheader("Retry-After")
            payload = resp.read().decode(errors="replace")
            return resp.status, retry, None, None, payload, None, None
        ttft, text, finish, usage, done = None, [], None, None, False
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.decode().rstrip("\r\n")
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                return 200, None, None, None, f"stream error: {data}", None, None
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk["choices"]:
                piece = c["delta"].get("content")
                if piece:
                    if ttft is None:
                        ttft = time.monotonic() - t0
                    text.append(piece)
                if c.get("finish_reason"):
                    finish = c["finish_reason"]
        latency = time.monotonic() - t0
        if not done:
            return 200, None, None, None, "stream ended without [DONE]", None, None
        return 200, None, ttft, latency, "".join(text), finish, usage
    finally:
        conn.close()


def client(cid, args, host, port, stats, deadline):
    for i in range(args.requests):
        prompt = PROMPTS[(cid + i) % len(PROMPTS)]
        while True:
            if time.monotonic() > deadline:
                with stats.lock:
                    stats.errors.append(f"client {cid}: deadline reached")
                return
            try:
                status, retry, ttft, lat, text, finish, usage = one_request(
                    host, port, prompt, args.max_tokens, deadline)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                with stats.lock:
                    stats.errors.append(f"client {cid} request {i}: {e!r}")
                break
            if status == 429:
                with stats.lock:
                    stats.rejected += 1
                time.sleep(min(float(retry or 1), 5.0))
                continue
            with stats.lock:
                if status != 200 or ttft is None:
                    stats.errors.append(f"client {cid} request {i}: {status} {text[:300]}")
                elif finish != "length" or not usage or usage["completion_tokens"] != args.max_tokens:
                    stats.errors.append(
                        f"client {cid} request {i}: finish {finish}, usage {usage}")
                else:
                    stats.ok += 1
                    stats.latency.append(lat)
                    stats.ttft.append(ttft)
                    stats.texts.setdefault(prompt, set()).add(text)
            break


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="target/release/lade")
    ap.add_argument("--model", default=os.environ.get("LADE_MODEL"))
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=20, help="per client")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--lookahead", default="off", help="the server's --lookahead")
    ap.add_argument("--max-concurrent", type=int, default=4)
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--deadline", type=float, default=1800.0, help="seconds for the whole run")
    ap.add_argument("--json", help="write the summary here")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="one more argument of lade serve (repeatable), e.g. --fresh-sessions")
    a = ap.parse_args()

    server_args = ["--quiet", "--lookahead", a.lookahead, "--max-concurrent",
                   str(a.max_concurrent), "--queue", str(a.queue)]
    if a.model:
        server_args += ["--model", a.model]
    server_args += a.server_arg
    with LadeServer(a.bin, server_args) as server:
        u = urlparse(server.base)
        stats = Stats()
        deadline = time.monotonic() + a.deadline
        t0 = time.monotonic()
        threads = [threading.Thread(target=client, args=(i, a, u.hostname, u.port, stats, deadline))
                   for i in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        m = server.metrics()
        exit_code = server.stop()

    expected = a.clients * a.requests
    errors = list(stats.errors)
    if stats.ok != expected:
        errors.append(f"{stats.ok} of {expected} requests succeeded")
    for prompt, texts in stats.texts.items():
        if len(texts) != 1:
            errors.append(f"{len(texts)} different answers to {prompt!r}")
    served = metric(m, 'lade_requests_total{endpoint="/v1/chat/completions",code="200"}')
    if served != stats.ok:
        errors.append(f"server counted {served:.0f} answered requests, clients {stats.ok}")
    rejected = metric(m, "lade_requests_rejected_total")
    if rejected != stats.rejected:
        errors.append(f"server counted {rejected:.0f} 429s, clients {stats.rejected}")
    if metric(m, "lade_requests_cancelled_total") != 0:
        errors.append("the server cancelled generations")
    if exit_code != 0:
        errors.append(f"lade serve exited with {exit_code} after SIGTERM")

    tokens = stats.ok * a.max_tokens
    summary = {
        "lookahead": a.lookahead, "clients": a.clients, "requests_per_client": a.requests,
        "max_tokens": a.max_tokens, "max_concurrent": a.max_concurrent, "queue": a.queue,
        "server_args": a.server_arg,
        "succeeded": stats.ok, "expected": expected, "rejected_429": stats.rejected,
        "errors": len(errors), "wall_s": round(wall, 1),
        "requests_per_s": round(stats.ok / wall, 3), "tokens_per_s": round(tokens / wall, 1),
        "latency_p50_s": round(percentile(stats.latency, 50), 2),
        "latency_p95_s": round(percentile(stats.latency, 95), 2),
        "ttft_p50_s": round(percentile(stats.ttft, 50), 2),
        "ttft_p95_s": round(percentile(stats.ttft, 95), 2),
        "server_step_compression": round(metric(m, "lade_step_compression"), 3),
        "server_decode_steps": metric(m, "lade_decode_steps_total"),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(summary, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=2)
    for e in errors[:20]:
        print(f"ERROR: {e}", file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
