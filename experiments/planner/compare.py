"""Plan beside measurement for the runs of h200_1b.sh: `python experiments/planner/compare.py outputs/planner`.
Prints one markdown row per run: planned and measured GPU peak (allocated), step time (the last step) and tokens/s."""

import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "outputs/planner"
print("| run | GPU peak GiB plan / measured | s/step plan / measured | tokens/s plan / measured | status |")
print("|---|---|---|---|---|")
for name in sorted(os.listdir(root)):
    try:
        plan = json.load(open(os.path.join(root, name, "plan", "plan.json")))
        res = json.load(open(os.path.join(root, name, "run", "result.json")))
    except OSError as exc:
        print(f"| {name} | missing: {exc} | | | |")
        continue
    m = lambda k: res.get(k) or 0.0  # noqa: E731
    print(
        f"| {name} | {plan['gpu_peak_gib']:.1f} / {m('peak_mem_gib'):.1f} | {plan['step_time_s']:.1f} / "
        f"{m('step_time_s'):.1f} | {plan['tokens_per_s']:,.0f} / {m('tokens_per_s'):,.0f} | {res['status']} |"
    )
