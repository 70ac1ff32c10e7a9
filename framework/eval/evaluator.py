"""The eval group built (`_target_`): the held-out evaluation the step loop runs every `every` steps (or once, with
`only`), with loss by position and passkey retrieval."""

import json
import math
import os
import time
from typing import Callable, Optional

import torch
import torch.distributed as dist

from framework.data.rows import IGNORE
from framework.eval import passkey as pk
from framework.eval.positions import as_record, bucket_sums, position_edges


def _now() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


class Evaluator:
    """Token-weighted loss over `steps` held-out micro-batches (the same ones every time), sharded like training: SP
    and the ring stay on, so evaluation fits wherever training does. From the same forward's per-token losses, the
    loss by the predicted token's position in its document; with `passkey`, one more forward per passkey case.

    Built by hydra.utils.instantiate(cfg.eval, batches=..., ...): `batches` a function returning a fresh iterator
    over the held-out micro-batches; `shard` maps a whole `[b, s]` row to this rank's `[b, s_local]` piece on the
    device (the data adapter's shard_row); `seq_length` the training row length; `run_dir` where rank 0 writes
    eval/; `tokenizer_path` / `vocab_size` / `filler_vocab` (data.filler_vocab) make the passkey cases; `dp_rank` /
    `dp_size` split the cases over the DP replicas; `seed` draws them.
    """

    def __init__(
        self,
        *,
        batches=None,
        every: int = 0,
        steps: int = 2,
        only: bool = False,
        position_buckets="auto",
        passkey: bool = False,
        passkey_lengths="auto",
        passkey_depths=pk.DEPTHS,
        passkey_samples: int = 1,
        passkey_write_inputs: bool = False,
        shard: Optional[Callable] = None,
        seq_length: int = 0,
        pieces: int = 1,
        run_dir: Optional[str] = None,
        tokenizer_path: Optional[str] = None,
        vocab_size: int = 0,
        filler_vocab: int = 0,
        dp_rank: int = 0,
        dp_size: int = 1,
        seed: int = 0,
        **_ignored,
    ):
        self.batches, self.every, self.steps, self.only = batches, every, steps, only
        self.edges = position_edges(position_buckets, seq_length) if seq_length else []
        self.passkey, self.shard, self.run_dir = passkey, shard, run_dir
        self.passkey_spec = dict(
            lengths=passkey_lengths,
            depths=list(passkey_depths),
            samples=passkey_samples,
            write_inputs=passkey_write_inputs,
        )
        self.seq_length, self.pieces, self.tokenizer_path, self.vocab_size = (
            seq_length,
            pieces,
            tokenizer_path,
            vocab_size,
        )
        self.dp_rank, self.dp_size, self.seed, self.filler_vocab = dp_rank, dp_size, seed, filler_vocab
        self.cases = None
        self.history = []  # (step, loss by position record), for the pictures

    def due(self, step: int) -> bool:
        return bool(self.every) and self.batches is not None and step % self.every == 0

    def run(self, ds_engine, step: int = 0) -> dict:
        """The step record's eval fields. All ranks must call this (the sums are reduced over every rank)."""
        ds_engine.eval()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = _now()
        with torch.no_grad():
            out = self.held_out(ds_engine) if self.batches is not None else {}
            t1 = _now()
            out["eval_s"] = t1 - t0
            if self.passkey:
                out.update(self.run_passkey(ds_engine, step))
                out["eval_passkey_s"] = _now() - t1
        ds_engine.train()
        if torch.cuda.is_available():  # this rank's, as the step's peak_mem_gib: evaluation fits where training does?
            out["eval_peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        if dist.get_rank() == 0 and self.run_dir:
            from framework.eval import report

            if "eval_loss_by_position" in out:
                self.history.append((step, out["eval_loss_by_position"]))
            report.draw(self.run_dir, step=step, history=self.history, passkey_path=out.get("_passkey_path"))
        out.pop("_passkey_path", None)
        return out

    def held_out(self, ds_engine) -> dict:
        batches = self.batches()
        edges = torch.tensor(self.edges, dtype=torch.long, device=ds_engine.device)
        k = max(len(self.edges) - 1, 0)
        total = torch.zeros(2 + 2 * k, dtype=torch.float64, device=ds_engine.device)
        for _ in range(self.steps):
            batch = next(batches)
            _, _, ce, _ = ds_engine(**batch, per_token=True)  # this rank's per-token CE: nothing is recomputed
            valid = batch["shift_labels"] != IGNORE
            total[0] += ce[valid].double().sum()
            total[1] += valid.sum()
            if k:
                total[2:] += bucket_sums(ce, batch["shift_labels"], batch["position_ids"], edges).reshape(-1)
        # every rank: the SP / ring ranks hold disjoint shards and the DP replicas different rows, so each token is
        # counted once
        dist.all_reduce(total)
        t = total.tolist()
        out = {"eval_loss": t[0] / max(t[1], 1)}
        if k:
            out["eval_loss_by_position"] = as_record(self.edges, t[2 : 2 + k], t[2 + k :])
        return out

    def build_cases(self):
        spec = self.passkey_spec
        used = [u for _, u in pk.lengths(spec["lengths"], self.seq_length, self.pieces)]
        lay = pk.layout(self.tokenizer_path, self.vocab_size, self.filler_vocab)
        self.cases = pk.cases(lay, lengths_used=used, depths=spec["depths"], samples=spec["samples"], seed=self.seed)

    def run_passkey(self, ds_engine, step: int) -> dict:
        """One forward per case, the case's row sharded like training; the DP replicas take every dp_size-th case.
        Every rank runs the same number of forwards (ZeRO-3 gathers are collective)."""
        if self.cases is None:
            self.build_cases()
        n, kmax = len(self.cases), max(len(c.answer_ids) for c in self.cases)
        dev = ds_engine.device
        res = torch.zeros(n, kmax, 3, dtype=torch.float64, device=dev)  # logprob, argmax, owned
        for j in range(math.ceil(n / self.dp_size)):
            i = j * self.dp_size + self.dp_rank
            c = self.cases[min(i, n - 1)]  # past the end: repeat the last case, recording nothing
            L, first = len(c.input_ids), c.answer_start - 1  # the position predicting answer token 0
            shift = torch.full((1, L), IGNORE, dtype=torch.long)
            shift[0, first : first + len(c.answer_ids)] = torch.tensor(c.answer_ids)
            where = torch.arange(L)[None]
            batch = {
                "input_ids": self.shard(c.input_ids[None]),
                "position_ids": self.shard(where),
                "shift_labels": self.shard(shift),
            }
            _, _, ce, pred = ds_engine(**batch, per_token=True)  # every rank of the sequence group
            if i >= n:
                continue
            glob = batch["position_ids"][0] - first
            mine = (glob >= 0) & (glob < len(c.answer_ids))
            res[i, glob[mine], 0] = -ce[0, mine].double()
            res[i, glob[mine], 1] = pred[0, mine].double()
            res[i, glob[mine], 2] = 1.0
        dist.all_reduce(res)  # every rank: each answer position is owned by one rank of one replica
        res = res.cpu()
        rows = []
        for i, c in enumerate(self.cases):
            k = len(c.answer_ids)
            predicted = [int(x) for x in res[i, :k, 1].tolist()]
            rows.append(
                {
                    "length": c.length,
                    "depth": c.depth,
                    "answer_start": c.answer_start,
                    "answer_ids": c.answer_ids,
                    "predicted_ids": predicted,
                    "correct": predicted == c.answer_ids,
                    "answer_logprob": float(res[i, :k, 0].sum()),
                }
            )
            if self.passkey_spec["write_inputs"]:
                rows[-1]["input_ids"] = c.input_ids.tolist()
        out = {"eval_passkey_accuracy": sum(r["correct"] for r in rows) / len(rows)}
        if dist.get_rank() == 0 and self.run_dir:
            os.makedirs(os.path.join(self.run_dir, "eval"), exist_ok=True)
            path = os.path.join(self.run_dir, "eval", f"passkey_step_{step}.jsonl")
            with open(path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
            out["_passkey_path"] = path
        return out
