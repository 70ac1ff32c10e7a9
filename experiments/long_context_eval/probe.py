"""What one evaluation costs beside training, piece by piece, on one GPU: the job built as the command builds it
(framework.graph.build), 3 training steps, then each evaluation piece timed (CUDA-synchronized, best of 3 after a
warm-up) on the same held-out row:

- `plain`: the engine's forward under no_grad in eval mode, the loss only (what an evaluation cost before issue 25);
- `per_token`: the same forward returning each position's CE and argmax (what the evaluator calls);
- `held_out`: the evaluator's whole held-out pass for that row (per-token forward + loss-by-position sums + the
  all-reduce);
- `passkey`: the default passkey cases (framework.eval.Evaluator.run_passkey), once warm.

    python experiments/long_context_eval/probe.py <out.json> +experiment=llama1b_1gpu data.seq_length=65536 ...

Run from the repository root on a GPU machine (one process: RANK 0 of 1).
"""

import json
import os
import sys
import tempfile
import time

STEPS = int(os.environ.get("PROBE_STEPS", "3"))
"""Training steps before the evaluation pieces (the step time is the mean of steps 2 on)."""
REPEAT = int(os.environ.get("PROBE_REPEAT", "3"))
"""Timed calls of each piece after its warm-up call (the best is kept)."""


def main():
    out_path, overrides = sys.argv[1], sys.argv[2:]
    for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29531", "RANK": "0", "WORLD_SIZE": "1"}.items():
        os.environ.setdefault(k, v)
    os.environ.setdefault("LOCAL_RANK", "0")
    from hydra import compose, initialize_config_dir

    from framework.cli import CONF_DIR
    from framework.config import register

    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides + [f"train.max_steps={STEPS}", "eval.every=0"])
        from framework.validate import validate

        validate(cfg)
    import torch

    from framework.data.rows import IGNORE
    from framework.eval.positions import bucket_sums
    from framework.graph import build
    from framework.launch import init_distributed

    device = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a smoke test of this script, no figures
    init_distributed(device)
    run_dir = tempfile.mkdtemp(prefix="probe_")
    parts = build(cfg, run_dir)
    trainer = parts.trainer
    trainer.run()
    train_peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    steps = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    ds = trainer.ds

    from framework.eval.evaluator import Evaluator

    ev = Evaluator(
        batches=None,
        passkey=True,
        shard=lambda t: t.to(ds.device),
        seq_length=cfg.data.seq_length,
        vocab_size=parts.model.config.get_text_config().vocab_size,
        seed=2,
    )

    row = torch.randint(0, ev.vocab_size, (1, cfg.data.seq_length), device=ds.device)
    batch = {
        "input_ids": row,
        "position_ids": torch.arange(cfg.data.seq_length, device=ds.device)[None],
        "shift_labels": torch.cat([row[:, 1:], torch.full((1, 1), IGNORE, device=ds.device)], 1),
    }
    edges = torch.tensor(ev.edges, device=ds.device)

    def timed(fn, n=REPEAT):
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        fn()
        best = float("inf")
        for _ in range(n):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            best = min(best, time.perf_counter() - t)
        return best

    def held_out():
        _, _, ce, _ = ds(**batch, per_token=True)
        valid = batch["shift_labels"] != IGNORE
        s = torch.stack([ce[valid].double().sum(), valid.sum().double()])
        b = bucket_sums(ce, batch["shift_labels"], batch["position_ids"], edges)
        torch.distributed.all_reduce(s)
        torch.distributed.all_reduce(b)

    ds.eval()
    with torch.no_grad():
        res = {
            "seq_length": cfg.data.seq_length,
            "step_s": sum(m["step_time_s"] for m in steps[1:]) / max(len(steps) - 1, 1),
            "train_forward_s": sum(m["forward_s"] for m in steps[1:]) / max(len(steps) - 1, 1),
            "plain_s": timed(lambda: ds(**batch)),
            "per_token_s": timed(lambda: ds(**batch, per_token=True)),
            "held_out_s": timed(held_out),
        }
        ev.build_cases()
        res["passkey_cases"] = len(ev.cases)
        res["passkey_tokens"] = sum(len(c.input_ids) for c in ev.cases)
        res["passkey_s"] = timed(lambda: ev.run_passkey(ds, step=0), n=1)
    res["held_out_over_plain"] = res["held_out_s"] / res["plain_s"]
    res["passkey_over_step"] = res["passkey_s"] / res["step_s"]
    res["train_peak_gib"] = train_peak  # the 3 training steps
    res["eval_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None  # the pieces after
    print(json.dumps(res))
    with open(out_path, "w") as f:
        json.dump(res, f, indent=1)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
