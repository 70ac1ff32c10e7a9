"""Rank 0's pictures of the evaluations: eval/loss_by_position.png (one curve per evaluation, positions on a log
scale) and eval/passkey_step_N.png (the length x depth heatmap of passkey accuracy). matplotlib, Agg backend."""

import json
import os
from collections import defaultdict
from typing import List, Optional

from framework.log import get_logger

log = get_logger(__name__)


def heatmap_cells(rows: List[dict]):
    """(lengths, depths, accuracy [depth][length], mean answer log-prob [depth][length]) from passkey cases."""
    acc, lp = defaultdict(list), defaultdict(list)
    for r in rows:
        acc[(r["length"], r["depth"])].append(float(r["correct"]))
        lp[(r["length"], r["depth"])].append(r["answer_logprob"])
    lengths = sorted({k[0] for k in acc})
    depths = sorted({k[1] for k in acc})
    mean = lambda v: sum(v) / len(v) if v else float("nan")  # noqa: E731
    return (
        lengths,
        depths,
        [[mean(acc[(n, d)]) for n in lengths] for d in depths],
        [[mean(lp[(n, d)]) for n in lengths] for d in depths],
    )


def draw_loss_by_position(path: str, history):
    """history: [(step, [[lo, hi, loss, tokens], ...]), ...]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    cmap = plt.get_cmap("viridis")
    for i, (step, buckets) in enumerate(history):
        pts = [(max(lo, 1) * max(hi, 1)) ** 0.5 for lo, hi, loss, _ in buckets if loss is not None]
        losses = [loss for _, _, loss, _ in buckets if loss is not None]
        ax.plot(pts, losses, marker="o", ms=3, color=cmap(i / max(len(history) - 1, 1)), label=f"step {step}")
    ax.set_xscale("log")
    ax.set_xlabel("position of the predicted token in its document (bucket's geometric middle)")
    ax.set_ylabel("held-out loss")
    ax.set_title("loss by position")
    ax.grid(alpha=0.3)
    if len(history) <= 12:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_passkey(path: str, rows: List[dict], step: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths, depths, acc, lp = heatmap_cells(rows)
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(lengths), 1.2 + 0.6 * len(depths)))
    im = ax.imshow(acc, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto", origin="upper")
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
    for y in range(len(depths)):
        for x in range(len(lengths)):
            ax.text(x, y, f"{acc[y][x]:.2f}\n{lp[y][x]:.1f}", ha="center", va="center", fontsize=7)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("depth of the key")
    ax.set_title(f"passkey accuracy (and answer log-prob), step {step}", fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw(run_dir: str, *, step: int, history, passkey_path: Optional[str] = None):
    """Redraw eval/loss_by_position.png and draw this step's passkey heatmap. A picture that fails is said, never
    fatal: the numbers are in metrics.jsonl and the jsonl files."""
    out = os.path.join(run_dir, "eval")
    os.makedirs(out, exist_ok=True)
    try:
        if history:
            draw_loss_by_position(os.path.join(out, "loss_by_position.png"), history)
        if passkey_path:
            rows = [json.loads(line) for line in open(passkey_path)]
            draw_passkey(os.path.join(out, f"passkey_step_{step}.png"), rows, step)
    except Exception as exc:  # a missing font or backend must not stop training
        log.warning(f"eval: could not draw the pictures ({type(exc).__name__}: {exc})")
