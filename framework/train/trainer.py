"""The step loop (`Trainer`): optimizer steps on the DeepSpeed engine, with metrics, evaluation and checkpoints."""

import math
import os
import signal
import time
from typing import Any, Dict

import torch
import torch.distributed as dist

from framework.data.rows import IGNORE
from framework.log import get_logger
from framework.model.features import offload_context
from framework.tracker.flops import peak_tflops as card_peak_tflops
from framework.train.config import NonFinite
from framework.tracker.metrics import JsonlWriter

log = get_logger(__name__)


def memory_stats() -> Dict[str, float]:
    """Peak GPU memory since the last reset, host RSS, pinned host bytes now and at their peak since the last reset
    (the offloaded checkpoints live there during forward and backward), and the host's memory in use (GiB); and the
    capacities they are read against (the card's memory, the node's RAM; the sweep summary draws them)."""
    import psutil

    vm = psutil.virtual_memory()
    out = {
        "host_rss_gib": psutil.Process().memory_info().rss / 2**30,
        "host_used_gib": (vm.total - vm.available) / 2**30,
        "peak_mem_gib": 0.0,
        "peak_reserved_gib": 0.0,
        "peak_mem_pct": 0.0,
        "pinned_gib": 0.0,
        "pinned_peak_gib": 0.0,
        "host_ram_total_gib": vm.total / 2**30,
        "gpu_mem_total_gib": 0.0,
    }
    if torch.cuda.is_available():
        total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        out["gpu_mem_total_gib"] = total / 2**30
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        out["peak_mem_pct"] = 100 * torch.cuda.max_memory_reserved() / total
        try:
            host = torch.cuda.host_memory_stats()
            out["pinned_gib"] = host.get("allocated_bytes.current", 0) / 2**30
            out["pinned_peak_gib"] = host.get("active_bytes.peak", host.get("allocated_bytes.peak", 0)) / 2**30
        except Exception:  # older torch: no host allocator stats
            pass
    return out


def reset_peaks():
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        try:
            torch.cuda.reset_peak_host_memory_stats()
        except Exception:  # older torch
            pass


def now() -> float:
    """Wall-clock seconds after the GPU's queued work is done."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


class StopRequested(KeyboardInterrupt):
    """The job was asked to stop (checkpoint.save_on_interrupt) and saved its checkpoint. A KeyboardInterrupt, so that a
    rank ends with one line and no traceback, as it does on Ctrl-C."""


class Trainer:
    """The step loop (the `train` group): runs optimizer steps on the DeepSpeed engine it is given, writes metrics,
    evaluates (`eval`) and saves checkpoints (`checkpoint`)."""

    def __init__(
        self,
        *,
        ds_engine,
        batches,
        checkpointer,
        evaluator,
        run_dir: str,
        tracker,
        flops_of_positions,
        world_size: int,
        sp_size: int,
        peak_tflops: float = 0.0,
        start_step: int = 0,
        offload_activations: bool = False,
        offload_keep_layers: int = 1,
        on_step=None,
        max_steps: int = 10,
        seed: int = 42,
        micro_batch_size: int = 1,
        gradient_accumulation_steps: int = 1,
        device: str = "auto",
        on_nonfinite: str = NonFinite.stop,
        dump_grads: bool = False,
    ):
        del seed, micro_batch_size, device  # the train group's keys the graph used before the loop starts
        self.ds, self.batches, self.run_dir = ds_engine, batches, run_dir
        self.max_steps, self.gradient_accumulation_steps = max_steps, gradient_accumulation_steps
        self.on_nonfinite, self.dump_grads_once = NonFinite(str(on_nonfinite)), dump_grads
        self.checkpointer, self.evaluator = checkpointer, evaluator  # the checkpoint and eval groups, built
        self.tracker, self.world, self.sp_size = tracker, world_size, sp_size
        self.flops_of_positions = flops_of_positions  # position_ids [b, s_local] -> training FLOPs of those tokens
        self.step, self.offload_activations, self.on_step = start_step, offload_activations, on_step
        self.offload = offload_context(offload_activations, offload_keep_layers)  # one for the run: buffers reused
        # from_pretrained returns a model in eval mode, and transformers checkpoints a layer only in training mode:
        # without this, model.name_or_path runs silently trained without activation checkpointing (and dropout)
        ds_engine.train()
        self.rank = dist.get_rank()
        self.metrics = None
        if self.rank == 0:
            self.metrics = JsonlWriter(os.path.join(run_dir, "metrics.jsonl"))
        self.peak = card_peak_tflops(peak_tflops)
        self.device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        self.last: Dict[str, Any] = {}
        self.peak_mem_gib = 0.0
        self.grads_dumped = False
        self.signalled, self.stop_now, self.save_by_time = None, False, False
        if checkpointer.save_on_interrupt:
            signal.signal(signal.SIGTERM, self.on_sigterm)
        # SP partial gradients must be summed over the SP ranks. ZeRO-1/2 and ZeRO-3's all-reduce path divide by the DP
        # size only, but ZeRO-3's reduce-scatter path (the default) averages over all sp x dp ranks: scale the loss
        # that is back-propagated by sp_size there (tests/distributed/test_sp_equivalence.py checks the gradients).
        zero3_rs = ds_engine.zero_optimization_stage() == 3 and ds_engine.zero_reduce_scatter()
        self.backward_scale = float(sp_size) if sp_size > 1 and zero3_rs else 1.0

    def on_sigterm(self, signum, _frame):
        """checkpoint.save_on_interrupt: note the signal; the step loop saves at the end of this step and stops."""
        self.signalled = signal.Signals(signum)

    def dump_grads(self):
        """train.dump_grads: save every parameter's full gradient, reduced over DP/SP ranks, before the optimizer
        step. All ranks must call this (under ZeRO each safe_get_full_grad gathers the gradient's partitions)."""
        from deepspeed.utils import safe_get_full_grad

        grads = {}
        for name, p in self.ds.module.named_parameters():
            g = safe_get_full_grad(p)  # every rank, same order: a collective under ZeRO 1-3
            if g is not None:
                grads[name.removeprefix("model.")] = g.detach().float().cpu().clone()
        if self.rank == 0:
            torch.save(grads, os.path.join(self.run_dir, f"grads_step{self.step + 1}.pt"))
        self.grads_dumped = True

    def reduce(self, values):
        """Sum a few floats over every rank. All ranks must call this."""
        t = torch.tensor(values, dtype=torch.float64, device=self.ds.device)
        dist.all_reduce(t)
        return t.tolist()

    def train_step(self):
        """One optimizer step (gradient_accumulation_steps micro-steps). Returns the step's metrics."""
        reset_peaks()
        t0 = now()
        loss_x_n = n_valid = tokens = flops = fwd_s = bwd_s = opt_s = offloaded = 0.0
        seq_len = 0
        lr = self.ds.get_lr()[0]  # the rate this step uses (the schedule moves on at its end)
        gas = self.gradient_accumulation_steps
        micro = [next(self.batches) for _ in range(gas)]
        # The step's loss is the sum of CE over every valid token of the step (all micro-steps, all DP replicas)
        # divided by their count, not a mean of per-micro-batch means. DeepSpeed divides the gradient by gas and
        # averages it over the DP ranks; undo both, so each micro-step back-propagates its SP group's CE sum / count.
        local_valid = sum(float((b["shift_labels"] != IGNORE).sum()) for b in micro)  # CPU-GPU sync point
        (n_step,) = self.reduce([local_valid])  # every rank; SP ranks hold disjoint shards: each token counted once
        scale = gas * (self.world // self.sp_size) * self.backward_scale / max(n_step, 1.0)
        for batch in micro:
            t_fwd = now()  # each phase timed to the end of its GPU work: three syncs per micro-step
            # hidden states leave in forward, return in backward
            with self.offload:
                loss, n = self.ds(**batch)  # the SP group's mean CE over its valid tokens, and their count
                t_bwd = now()
                self.ds.backward(loss * n * scale)
            offloaded += getattr(getattr(self.offload, "stats", None), "offloaded_bytes", 0) / 2**30
            t_opt = now()
            if self.dump_grads_once and not self.grads_dumped and self.ds.is_gradient_accumulation_boundary():
                self.dump_grads()
            self.ds.step()
            fwd_s, bwd_s, opt_s = fwd_s + t_bwd - t_fwd, bwd_s + t_opt - t_bwd, opt_s + now() - t_opt
            loss_x_n += float(loss.detach()) * float(n)  # CPU-GPU sync point
            n_valid += float(n)
            b, s_local = batch["input_ids"].shape
            tokens += b * s_local
            seq_len = s_local * self.sp_size
            flops += self.flops_of_positions(batch["position_ids"])  # per document for packed rows
        dt = now() - t0
        self.step += 1
        loss_x_n, n_valid, tokens, flops, stop, late = self.reduce(
            [loss_x_n, n_valid, tokens, flops, float(self.signalled is not None), float(self.checkpointer.time_due())]
        )  # every rank
        self.stop_now = self.stop_now or stop > 0  # a rank got SIGTERM: all save at this step's end
        self.save_by_time = late > 0  # checkpoint.every_minutes passed on some rank: all save at this step's end
        grad_norm = self.ds.get_global_grad_norm()
        mem = memory_stats()
        tflops = flops / dt / self.world / 1e12
        m = {
            "step": self.step,
            "loss": loss_x_n / max(n_valid, 1),
            "seq_length": seq_len,
            "tokens": int(tokens),
            "tokens_per_s": tokens / dt,
            "tokens_per_s_per_gpu": tokens / dt / self.world,
            "tflops_per_gpu": tflops,
            "mfu": tflops / self.peak if self.peak else 0.0,
            "lr": lr,
            "grad_norm": float(grad_norm) if grad_norm is not None else 0.0,
            "step_time_s": dt,
            "forward_s": fwd_s,
            "backward_s": bwd_s,
            "optimizer_s": opt_s,
            **({"offloaded_gib": offloaded} if self.offload_activations else {}),  # this rank's, all micro-steps
            **mem,
            "device_name": self.device_name,
        }
        self.peak_mem_gib = max(self.peak_mem_gib, mem["peak_mem_gib"])
        if not (math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])):
            self.nonfinite(m)
        return m

    def nonfinite(self, m):
        """train.on_nonfinite for a step whose loss or gradient norm is NaN/inf. Every rank reaches the same
        decision: the loss was reduced over all ranks and the norm is global."""
        what = f"step {m['step']}: loss {m['loss']}, grad norm {m['grad_norm']}"
        if self.on_nonfinite == NonFinite.skip and not self.ds.was_step_applied():
            m["skipped"] = True  # DeepSpeed found the gradients invalid and did not step (nor did the LR schedule)
            log.info(f"{what}: skipped (train.on_nonfinite=skip)")
            return
        if self.on_nonfinite == NonFinite.skip:
            raise FloatingPointError(
                f"{what}, and DeepSpeed applied the update (its overflow check is off for this "
                "ZeRO stage and dtype): the weights are no longer finite; stopped"
            )
        raise FloatingPointError(f"{what}: stopped (train.on_nonfinite=skip skips such steps)")

    def run(self) -> Dict[str, Any]:
        while self.step < self.max_steps:
            m = self.train_step()
            if self.evaluator.due(self.step):
                m.update(self.evaluator.run(self.ds, step=self.step))  # every rank
            self.last = m
            if self.rank == 0:
                self.metrics.write(m)
                self.tracker.log(m)
            if self.checkpointer.due(self.step, self.max_steps) or self.save_by_time or self.stop_now:
                self.checkpointer.save(self.ds, self.step)  # every rank
            if self.stop_now:
                raise StopRequested(f"stopped by SIGTERM after step {self.step}, saved in checkpoints/step_{self.step}")
            if self.on_step:
                self.on_step(self)
        if self.rank == 0:
            self.metrics.close()
        return self.last
