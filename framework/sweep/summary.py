"""The sweep root's summary.csv (one row per job) and summary.png (sequence length against peak memory and
tokens/s, failed jobs marked), read back from what each job left on disk: <job>/result.json and
<job>/.hydra/overrides.yaml. Reading from disk (not from the launcher's return values) makes it work alike for
every Hydra launcher: the basic one, and submitit's whose jobs ran on other nodes of a shared filesystem."""
import csv
import json
import os
import re
from typing import Any, Dict, List, Optional

COLUMNS = ["job", "overrides", "status", "seq_length", "steps", "final_loss", "peak_mem_gib", "peak_reserved_gib",
           "peak_mem_pct", "host_rss_gib", "tokens_per_s", "tokens_per_s_per_gpu", "tflops_per_gpu", "mfu",
           "step_time_s", "error"]
SEQ_KEY = "data.seq_length"


def job_dirs(sweep_dir: str) -> List[str]:
    """The job directories of a sweep (those Hydra saved overrides in, or with a result), in job-number order."""
    out = []
    for name in os.listdir(sweep_dir):
        path = os.path.join(sweep_dir, name)
        if os.path.isdir(path) and (os.path.exists(os.path.join(path, ".hydra", "overrides.yaml"))
                                    or os.path.exists(os.path.join(path, "result.json"))):
            out.append(path)
    num = lambda p: int(m.group(1)) if (m := re.match(r"(\d+)", os.path.basename(p))) else 1 << 30  # noqa: E731
    return sorted(out, key=lambda p: (num(p), os.path.basename(p)))


def read_overrides(job_dir: str) -> List[str]:
    path = os.path.join(job_dir, ".hydra", "overrides.yaml")
    if not os.path.exists(path):
        return []
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.load(path)]


def last_metrics(job_dir: str) -> Dict[str, Any]:
    """The last step of metrics.jsonl, with the memory figures as their maximum over the steps ({} if none)."""
    path = os.path.join(job_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return {}
    steps = []
    for line in open(path):
        try:
            steps.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a killed job
            pass
    if not steps:
        return {}
    out = dict(steps[-1])
    for k in ("peak_mem_gib", "peak_reserved_gib", "peak_mem_pct", "host_rss_gib", "host_used_gib", "pinned_gib",
              "pinned_peak_gib"):
        vals = [s[k] for s in steps if s.get(k) is not None]
        if vals:
            out[k] = max(vals)
    return out


def read_job(job_dir: str) -> Dict[str, Any]:
    """One row: the job's overrides, its result.json (status `missing` when it left none) and metrics."""
    path = os.path.join(job_dir, "result.json")
    rec: Dict[str, Any] = {}
    if os.path.exists(path):
        try:
            rec = json.load(open(path))
        except json.JSONDecodeError as exc:
            rec = {"status": "missing", "error": f"unreadable result.json ({exc})"}
    else:
        rec = {"status": "missing", "error": "the job left no result.json (killed, or still running)"}
    overrides = read_overrides(job_dir)
    m = last_metrics(job_dir)
    row = {k: rec.get(k, m.get(k)) for k in COLUMNS}
    for k in ("peak_mem_gib", "peak_reserved_gib", "peak_mem_pct", "host_rss_gib"):
        if m.get(k) is not None and (row[k] is None or m[k] > row[k]):
            row[k] = m[k]
    if row["seq_length"] is None:
        seq = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == SEQ_KEY), None)
        row["seq_length"] = int(seq) if seq and seq.isdigit() else None
    row["job"], row["overrides"] = os.path.basename(job_dir), " ".join(overrides)
    return row


def write_csv(rows: List[Dict[str, Any]], path: str):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in COLUMNS})
    os.replace(tmp, path)


def series_label(overrides: str, common: set) -> str:
    """A job's overrides without its sequence length and those every job shares: jobs that differ only in length
    form one line."""
    rest = [o for o in overrides.split() if o.split("=", 1)[0].lstrip("+") != SEQ_KEY and o not in common]
    return " ".join(rest)


def write_plot(rows: List[Dict[str, Any]], path: str, title: Optional[str] = None):
    """Sequence length (x) against peak GPU memory and host RSS (left axis) and tokens/s (right axis); an OOM job
    is a red cross and a red dotted line, another failed job a grey one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    ax2 = ax.twinx()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    plotted = [r for r in rows if r.get("seq_length")]
    sets = [set(r["overrides"].split()) for r in plotted]
    common = set.intersection(*sets) if sets else set()
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for r in plotted:
        groups.setdefault(series_label(r["overrides"], common), []).append(r)
    for i, (label, rs) in enumerate(groups.items()):
        c = colors[i % len(colors)]
        ok = sorted((r for r in rs if r["status"] == "ok"), key=lambda r: r["seq_length"])
        xs = [r["seq_length"] for r in ok]
        short = "" if not label else " · " + (label if len(label) <= 50 else label[:47] + "...")
        if ok:
            ax.plot(xs, [r["peak_mem_gib"] or 0.0 for r in ok], "o-", color=c, label=f"peak GPU memory{short}")
            ax.plot(xs, [r["host_rss_gib"] or 0.0 for r in ok], "^:", color=c, alpha=0.6,
                    label=f"host RSS (rank 0){short}")
            ax2.plot(xs, [r["tokens_per_s"] or 0.0 for r in ok], "s--", color=c, alpha=0.8,
                     label=f"tokens/s{short}")
        for r in rs:
            if r["status"] != "ok":
                col = "red" if r["status"] == "oom" else "grey"
                ax.axvline(r["seq_length"], color=col, linestyle=":", alpha=0.7)
                ax.plot([r["seq_length"]], [0], "x", color=col, markersize=12, mew=3, clip_on=False,
                        label=f"{r['status']}{short}")
    xs_all = [r["seq_length"] for r in rows if r.get("seq_length")]
    if xs_all and max(xs_all) >= 4 * min(xs_all):
        ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel("memory (GiB)")
    ax2.set_ylabel("tokens/s (all GPUs)")
    ax.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()
    handles2 = ax2.get_legend_handles_labels()
    seen, hs, ls = set(), [], []
    for h, lab in zip(handles[0] + handles2[0], handles[1] + handles2[1]):
        if lab not in seen:
            seen.add(lab)
            hs.append(h)
            ls.append(lab)
    if hs:
        fig.legend(hs, ls, fontsize=7, loc="lower center", ncol=min(3, len(hs)), frameon=False)
    shared = " ".join(o for o in (plotted[0]["overrides"].split() if plotted else []) if o in common)
    ax.set_title(f"{title or 'sweep'}\n{shared}", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0.06 + 0.03 * ((len(hs) - 1) // 3), 1, 1))
    tmp = f"{path}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def summarize(sweep_dir: str) -> List[Dict[str, Any]]:
    """Write <sweep_dir>/summary.csv and summary.png; return the rows."""
    rows = [read_job(d) for d in job_dirs(sweep_dir)]
    write_csv(rows, os.path.join(sweep_dir, "summary.csv"))
    write_plot(rows, os.path.join(sweep_dir, "summary.png"), title=sweep_dir)
    return rows
