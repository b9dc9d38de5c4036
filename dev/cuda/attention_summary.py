"""Summarises the CSV of `time_attention_variants` (tests/gpu_kernels.rs): per head layout,
cached positions and rows, the production kernel's time and each variant's time and ratio to
it, then each variant's summed time over every case against the production kernel's."""
import collections
import csv
import sys

rows = list(csv.DictReader(l for l in open(sys.argv[1]) if l.count(",") >= 6))
by = collections.defaultdict(dict)
for r in rows:
    by[(r["heads"], int(r["past"]), int(r["rows"]))][r["kernel"]] = r
totals = collections.defaultdict(float)
print(f"{'heads':10s} {'past':>5s} {'rows':>4s} {'prod us':>8s} {'GB/s':>6s}  variants: us (x production)")
for (heads, past, m), ks in sorted(by.items()):
    prod = next((r for r in ks.values() if r["production"] == "1"), None)
    if prod is None:
        continue
    p = float(prod["us"])
    totals[prod["kernel"].split("_hd")[0]] += p
    cells = []
    for name, r in sorted(ks.items()):
        if r["production"] == "1":
            continue
        us = float(r["us"])
        totals[name.split("_hd")[0]] += us
        cells.append(f"{name.split('_hd')[0]} {us:.1f} (x{us / p:.2f})")
    print(f"{heads:10s} {past:5d} {m:4d} {p:8.1f} {float(prod['cache_GBps']):6.0f}  " + "; ".join(cells))
print()
base = totals.get("attention", 0.0)
for name, t in sorted(totals.items()):
    print(f"{name:20s} {t:10.1f} us summed" + (f"  (x{t / base:.2f} of production)" if base else ""))
