"""Summarises the CSV of `time_gemm_variants` (tests/gpu_kernels.rs): per shape and row count,
the production kernel's time, the fastest kernel and schedule, and the fastest with one block
per split and with one block for all splits; then, per shape, the split count whose summed time
over the row counts is least (the split count must be the same for every row count)."""
import collections
import csv
import sys

rows = list(csv.DictReader(l for l in open(sys.argv[1]) if "," in l and not l.startswith("device")))
by = collections.defaultdict(list)
for r in rows:
    by[(r["shape"], int(r["rows"]))].append(r)
print(f"{'shape':14s} {'rows':>4s} {'prod us':>8s} {'GB/s':>6s} {'best us':>8s} {'GB/s':>6s} {'TFLOP/s':>7s}  best kernel / splits / split blocks")
for (shape, m), rs in sorted(by.items()):
    prod = [r for r in rs if r["production"] == "1"]
    best = min(rs, key=lambda r: float(r["us"]))
    p = prod[0] if prod else None
    print(f"{shape:14s} {m:4d} {float(p['us']) if p else float('nan'):8.1f} {float(p['weight_GBps']) if p else 0:6.0f} "
          f"{float(best['us']):8.1f} {float(best['weight_GBps']):6.0f} {float(best['TFLOPs']):7.1f}  "
          f"{best['kernel']} / {best['splits']} / {best['split_blocks']}")
print()
print("per shape and split count: the sum over row counts of the fastest kernel at that count")
shapes = sorted({r["shape"] for r in rows})
for shape in shapes:
    counts = collections.defaultdict(dict)
    for r in rows:
        if r["shape"] != shape:
            continue
        s, m, us = int(r["splits"]), int(r["rows"]), float(r["us"])
        counts[s][m] = min(us, counts[s].get(m, 1e18))
    ms = sorted({int(r["rows"]) for r in rows if r["shape"] == shape})
    line = []
    for s in sorted(counts):
        if all(m in counts[s] for m in ms):
            line.append(f"S={s}: " + " ".join(f"{counts[s][m]:.0f}" for m in ms))
    print(f"{shape:14s} rows {ms}: " + " | ".join(line))

print()
print("hi/lo activations (two f16 planes) against one plane: the fastest kernel of each at the")
print("production split count")
prod = {(r["shape"], int(r["rows"])): r for r in rows if r["production"] == "1"}
for (shape, m), p in sorted(prod.items()):
    same = [r for r in by[(shape, m)] if r["splits"] == p["splits"]]
    one = [r for r in same if "_p1_" in r["kernel"]]
    two = [r for r in same if "_p2_" in r["kernel"]]
    if one and two:
        a = min(one, key=lambda r: float(r["us"]))
        b = min(two, key=lambda r: float(r["us"]))
        print(f"{shape:14s} {m:4d} f16 {float(a['us']):8.1f} us  hi/lo {float(b['us']):8.1f} us  "
              f"x{float(b['us']) / float(a['us']):.2f}")

print()
print("wgmma (gemm_wgmma.cu and its variants) against mma.sync: the fastest kernel and schedule of each")
for (shape, m), rs in sorted(by.items()):
    mma = [r for r in rs if r["kernel"].startswith("gemm_p1_")]
    wg = [r for r in rs if r["kernel"].startswith("wgmma_")]
    if mma and wg:
        a = min(mma, key=lambda r: float(r["us"]))
        b = min(wg, key=lambda r: float(r["us"]))
        print(f"{shape:14s} {m:4d} mma.sync {float(a['us']):8.1f} us  wgmma {float(b['us']):8.1f} us "
              f"x{float(b['us']) / float(a['us']):.2f}  ({b['kernel']} / {b['splits']} / {b['split_blocks']})")
