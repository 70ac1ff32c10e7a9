"""Print one markdown table of a bench.sh call: our runs (result.json + metrics.jsonl) and the peer's JSON lines."""
import json
import os
import sys

root, specs = sys.argv[1], sys.argv[2:]
print("| run | seq len | status | steps | s/step (best) | fwd / bwd / opt s | tokens/s | TFLOP/s/GPU | MFU | "
      "peak GiB (alloc) | pinned peak GiB | host in use GiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for spec in specs:
    name = spec.split("|", 1)[0]
    run_dir = os.path.join(root, name)
    log = os.path.join(root, name + ".log")
    if os.path.exists(os.path.join(run_dir, "result.json")):
        r = json.load(open(os.path.join(run_dir, "result.json")))
        steps = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"))] \
            if os.path.exists(os.path.join(run_dir, "metrics.jsonl")) else []
        best = min(steps, key=lambda m: m["step_time_s"]) if steps else {}
        peak = max((m["peak_mem_gib"] for m in steps), default=0)
        parts = " / ".join(f"{best.get(k, 0):.1f}" for k in ("forward_s", "backward_s", "optimizer_s"))
        print(f"| {name} | {r.get('seq_length')} | {r['status']} {r.get('error', '')[:80]} | {len(steps)} | "
              f"{best.get('step_time_s', 0):.1f} | {parts} | {best.get('tokens_per_s', 0):,.0f} | "
              f"{best.get('tflops_per_gpu', 0):.0f} | {100 * best.get('mfu', 0):.1f}% | {peak:.1f} | "
              f"{max((m.get('pinned_peak_gib', 0) for m in steps), default=0):.1f} | "
              f"{max((m.get('host_used_gib', 0) for m in steps), default=0):.0f} |")
    elif os.path.exists(log):
        rows = [json.loads(x) for x in open(log) if x.startswith("{")]
        summ = [x for x in rows if x.get("summary")]
        ooms = [x for x in rows if x.get("oom")]
        for s in summ:
            print(f"| {name} (peer) | {s['seqlen']} | ok | | {s['best_sec']:.1f} | | {s['tok_per_s']:,} | | | "
                  f"{s['peak_gib']:.1f} | | |")
        for o in ooms:
            print(f"| {name} (peer) | {o['seqlen']} | oom | | | | | | | | | |")
        if not rows:
            print(f"| {name} | | no result (see log) | | | | | | | | | |")
