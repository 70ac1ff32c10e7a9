"""summary.png: a sweep read at a glance, one panel per question, sequence length (K/M tokens) on every x-axis.

- GPU memory per GPU: peak allocated (solid) and reserved (dotted) against the card's capacity (black line);
- host RAM: the node's memory in use and rank 0's RSS against the node's RAM (black line);
- tokens/s per GPU; MFU; step time;
- the last panel: what the colours, lines and marks mean, and why each failed job failed.

Jobs that differ only in their length form one series (one colour). A job that did not finish (OOM, failed,
interrupted, missing) is a vertical line at its length in every panel, and the figures of the steps it did train
are hollow marks. Where a job directory holds the planner's plan.json, its predictions (GPU peak, host RAM, step
time) are a dashed line in the series' colour beside the measurement. The card and the sweep's command are the
title. A one-job sweep draws the same panels around its one length.
"""

import textwrap
from typing import Any, Dict, List, Optional, Tuple

from framework.files import atomic_write

SEQ_KEY = "data.seq_length"  # the override that makes a job a point of its series rather than a series of its own
FAILED_COLORS = {"oom": "red", "failed": "dimgrey", "interrupted": "darkorange", "missing": "darkgrey"}
# (title, [(row key, y scale, line style)], the row key of the capacity line): the measurements of each panel, and
# the plan's prediction (plan_*) beside them
PANELS = [
    (
        "GPU memory per GPU (GiB)",
        [("peak_mem_gib", 1, "o-"), ("peak_reserved_gib", 1, "s:"), ("plan_gpu_peak_gib", 1, "--")],
        "gpu_mem_total_gib",
    ),
    (
        "host RAM (GiB)",
        [("host_used_gib", 1, "o-"), ("host_rss_gib", 1, "s:"), ("plan_host_ram_gib", 1, "--")],
        "host_ram_total_gib",
    ),
    ("tokens/s per GPU", [("tokens_per_s_per_gpu", 1, "o-")], None),
    ("MFU (%)", [("mfu", 100, "o-")], None),
    ("step time (s)", [("step_time_s", 1, "o-"), ("plan_step_time_s", 1, "--")], None),
]


def fmt_tokens(n: float) -> str:
    """65536 -> 64K, 1048576 -> 1M, 81920 -> 80K, 1536 -> 1.5K, 100 -> 100 (K = 1024 tokens)."""
    for unit, size in (("M", 2**20), ("K", 2**10)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


def outcome(row: Dict[str, Any]) -> str:
    """ok, oom, failed, interrupted (a failed job stopped by a signal) or missing."""
    status = row.get("status") or "missing"
    if status == "failed" and str(row.get("error") or "").startswith("interrupted"):
        return "interrupted"
    return status


def series_label(overrides: str, common: set) -> str:
    """A job's overrides without its sequence length and those every job shares: jobs that differ only in length
    form one line."""
    rest = [o for o in overrides.split() if o.split("=", 1)[0].lstrip("+") != SEQ_KEY and o not in common]
    return " ".join(rest)


def series(rows: List[Dict[str, Any]]) -> Tuple[Dict[str, List[Dict[str, Any]]], List[str]]:
    """The rows with a length grouped into series by their other overrides; and the overrides every job shares."""
    plotted = [r for r in rows if r.get("seq_length")]
    sets = [set((r.get("overrides") or "").split()) for r in plotted]
    common = set.intersection(*sets) if sets else set()
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for r in plotted:
        groups.setdefault(series_label(r.get("overrides") or "", common), []).append(r)
    shared = [o for o in (plotted[0].get("overrides") or "").split() if o in common] if plotted else []
    return groups, shared


def first(rows: List[Dict[str, Any]], key: str):
    return next((r[key] for r in rows if r.get(key)), None)


def header(rows: List[Dict[str, Any]], command: Optional[str], sweep: Optional[str]) -> str:
    """Title lines: the card and its capacity, the GPUs per job, the node's RAM; the command; the tally of jobs."""
    card = first(rows, "device_name") or "card not recorded"
    total = first(rows, "gpu_mem_total_gib")
    line = card + (f" ({total:.1f} GiB)" if total else "")
    gpus = {
        round(r["tokens_per_s"] / r["tokens_per_s_per_gpu"])
        for r in rows
        if r.get("tokens_per_s") and r.get("tokens_per_s_per_gpu")
    }
    if gpus:
        unit = ("process", "processes") if card == "cpu" else ("GPU", "GPUs")
        line += " × " + "/".join(map(str, sorted(gpus))) + " " + unit[gpus != {1}]
    if first(rows, "host_ram_total_gib"):
        line += f" · node RAM {first(rows, 'host_ram_total_gib'):.0f} GiB"
    tally: Dict[str, int] = {}
    for r in rows:
        tally[outcome(r)] = tally.get(outcome(r), 0) + 1
    jobs = f"{len(rows)} job{'s' * (len(rows) != 1)}: " + ", ".join(f"{n} {k}" for k, n in tally.items())
    lines = [line, *textwrap.wrap(command or "", 130), jobs + (f" · {sweep}" if sweep else "")]
    return "\n".join(x for x in lines if x)


def figure(rows: List[Dict[str, Any]], *, command: Optional[str] = None, sweep: Optional[str] = None):
    """The summary figure (a matplotlib Figure; write_plot saves it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    evaluated = any(r.get("eval_loss_by_position") or r.get("passkey_by_length") for r in rows)
    fig, axes = plt.subplots(4 if evaluated else 3, 2, figsize=(13, 16 if evaluated else 12))
    panels, legend_ax = axes.flat[:5], axes.flat[5]
    groups, shared = series(rows)
    # tab10 without its red, orange and grey: those mark the jobs that failed
    colors = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i not in (1, 3, 7)]
    lengths = sorted({r["seq_length"] for rs in groups.values() for r in rs})
    handles: List[Any] = []
    tops = [0.0] * len(PANELS)  # each panel's highest point: its y-axis runs from 0 to a little above it
    for i, (label, rs) in enumerate(groups.items()):
        c = colors[i % len(colors)]
        handles.append(Line2D([], [], color=c, lw=3, label=textwrap.shorten(label or "every job", 70)))
        rs = sorted(rs, key=lambda r: r["seq_length"])
        for n, (ax, (_, lines, _)) in enumerate(zip(panels, PANELS)):
            for key, scale, style in lines:
                # the plan predicts every job it was written for; a measurement is a job's that finished
                pts = [
                    (r["seq_length"], r[key] * scale)
                    for r in rs
                    if r.get(key) is not None and (key.startswith("plan_") or outcome(r) == "ok")
                ]
                if pts:
                    ax.plot(
                        *zip(*pts), style, color=c, alpha=0.8 if key.startswith("plan_") else 1.0, gid=f"{key}|{label}"
                    )
                part = [
                    (r["seq_length"], r[key] * scale)
                    for r in rs
                    if r.get(key) and outcome(r) != "ok" and not key.startswith("plan_")
                ]
                tops[n] = max([tops[n]] + [y for _, y in pts + part])
                if part:  # the steps a job trained before it failed: its figures, hollow
                    ax.plot(*zip(*part), style[0], color=c, mfc="none", ms=9, mew=1.5, gid=f"{key}|{label}|part")
    for ax, top, (title, lines, cap_key) in zip(panels, tops, PANELS):
        cap = first(rows, cap_key) if cap_key else None
        if cap:
            ax.axhline(cap, color="black", lw=1.5, gid=cap_key)
            ax.annotate(
                f"{'card' if cap_key.startswith('gpu') else 'node'}: {cap:.1f} GiB",
                (0.01, cap),
                xycoords=("axes fraction", "data"),
                va="bottom",
                fontsize=8,
            )
        if title.startswith("GPU") and all(not r.get("peak_mem_gib") for r in rows):
            ax.text(0.5, 0.5, "no GPU memory recorded (a CPU run)", transform=ax.transAxes, ha="center", color="grey")
        for r in rows:
            kind = outcome(r)
            if kind != "ok" and r.get("seq_length"):
                ax.axvline(r["seq_length"], color=FAILED_COLORS.get(kind, "grey"), ls=":", lw=2, gid=f"mark|{kind}")
                ax.annotate(
                    kind.upper() if kind == "oom" else kind,
                    (r["seq_length"], 0.98),
                    xycoords=("data", "axes fraction"),
                    xytext=(3, 0),
                    textcoords="offset points",
                    rotation=90,
                    va="top",
                    ha="left",
                    fontsize=8,
                    color=FAILED_COLORS.get(kind, "grey"),
                )
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, max(top, cap or 0) * 1.12 or 1.0)
        ax.grid(alpha=0.3)
        if lengths:  # log2 x, ticked at the lengths the jobs ran
            ax.set_xscale("log", base=2)
            ax.set_xlim(lengths[0] / 1.25, lengths[-1] * 1.25)
            ax.xaxis.set_major_locator(FixedLocator(lengths))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: fmt_tokens(x)))
            if len(lengths) > 6:
                ax.tick_params(axis="x", labelrotation=45)
        ax.set_xlabel("sequence length (tokens; K = 1024)", fontsize=8)
    legend_ax.axis("off")
    styles = [
        Line2D([], [], color="grey", ls=ls, marker=m, label=what)
        for ls, m, what in (
            ("-", "o", "measured (GPU: allocated; host: node in use)"),
            (":", "s", "GPU reserved / rank 0 RSS"),
            ("--", "", "planner's prediction (plan.json)"),
            ("-", "", "capacity: the card's / the node's RAM"),
        )
    ]
    styles[-1].set_color("black")
    styles.append(Line2D([], [], ls="", marker="o", mfc="none", color="grey", label="steps of a job that failed"))
    for kind, col in FAILED_COLORS.items():
        if any(outcome(r) == kind for r in rows):
            styles.append(Line2D([], [], color=col, ls=":", lw=2, label=kind))
    legend_ax.legend(
        handles=handles + styles,
        loc="upper left",
        fontsize=8,
        frameon=False,
        title=("series: " + textwrap.shorten(" ".join(shared), 60)) if shared else None,
        title_fontsize=8,
    )
    why = [
        f"{fmt_tokens(r['seq_length']) if r.get('seq_length') else r.get('job')} {outcome(r)}: "
        f"{textwrap.shorten(str(r.get('error') or '').removeprefix('interrupted: '), 90)}"
        for r in rows
        if outcome(r) != "ok"
    ]
    if why:
        legend_ax.text(
            0,
            0,
            "\n".join(why[:8] + ([f"... {len(why) - 8} more"] if len(why) > 8 else [])),
            transform=legend_ax.transAxes,
            va="bottom",
            fontsize=7,
            family="monospace",
        )
    if evaluated:
        eval_panels(axes.flat[6], axes.flat[7], groups, colors)
    fig.suptitle(header(rows, command, sweep), fontsize=10)
    fig.tight_layout()
    return fig


def eval_panels(ax_pos, ax_key, groups, colors):
    """Each job's last evaluation: its loss by position (one curve per job, the series' colour, darker for longer
    rows) and its passkey accuracy against context length."""
    styles = ["-", "--", "-.", ":"]
    for i, (label, rs) in enumerate(groups.items()):
        c = colors[i % len(colors)]
        for j, r in enumerate(sorted(rs, key=lambda r: r["seq_length"] or 0)):
            name = f"{textwrap.shorten(label, 30) + ' ' if label else ''}{fmt_tokens(r['seq_length'] or 0)}"
            buckets = [b for b in r.get("eval_loss_by_position") or [] if b[2] is not None]
            if buckets:
                ax_pos.plot(
                    [(max(lo, 1) * hi) ** 0.5 for lo, hi, _, _ in buckets],
                    [b[2] for b in buckets],
                    styles[j % len(styles)],
                    marker="o",
                    ms=3,
                    color=c,
                    label=name,
                    gid=f"eval_pos|{name}",
                )
            acc = r.get("passkey_by_length") or {}
            if acc:
                ax_key.plot(
                    [int(n) for n in acc],
                    list(acc.values()),
                    styles[j % len(styles)],
                    marker="o",
                    color=c,
                    label=name,
                    gid=f"eval_passkey|{name}",
                )
    ax_pos.set_title("final loss by position (held-out; position of the predicted token)", fontsize=10)
    ax_pos.set_xscale("log", base=2)
    ax_pos.set_xlabel("position in the document (bucket's geometric middle)", fontsize=8)
    ax_key.set_title("final passkey accuracy against context length", fontsize=10)
    ax_key.set_xscale("log", base=2)
    ax_key.set_ylim(-0.05, 1.05)
    ax_key.set_xlabel("context length (tokens)", fontsize=8)
    for ax in (ax_pos, ax_key):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no job evaluated this", transform=ax.transAxes, ha="center", color="grey")


def write_plot(rows: List[Dict[str, Any]], path: str, *, command: Optional[str] = None, sweep: Optional[str] = None):
    """Draw the summary figure into `path` (PNG), whole or not at all."""
    import matplotlib.pyplot as plt

    fig = figure(rows, command=command, sweep=sweep)
    try:
        with atomic_write(path, "wb") as f:
            fig.savefig(f, dpi=100, format="png")
    finally:
        plt.close(fig)
