"""engine: DeepSpeed ZeRO (2/3, optimizer and parameter offload) and the step loop: metrics, checkpoints, resume."""
from dataclasses import dataclass, field
import json
import os
import time
from typing import Any, Dict, Optional

import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from framework.model.features import offload_context


@dataclass
class EngineConfig:
    _target_: str = "framework.engine.build_engine"
    max_steps: int = 10
    """Optimizer steps to run."""
    seed: int = 42
    """Seeds weights (random init), data order and every RNG."""
    micro_batch_size: int = 1
    """Rows per rank per micro-step (before SP sharding: each SP rank holds b x s/sp_size tokens)."""
    gradient_accumulation_steps: int = 1
    zero_stage: int = 3
    """DeepSpeed ZeRO stage: 0, 1, 2 or 3."""
    offload_optimizer: bool = False
    """Keep optimizer states in CPU memory and step there (DeepSpeed CPU Adam)."""
    offload_params: bool = False
    """Keep parameters in CPU memory (ZeRO-3 only)."""
    offload_ratio: float = 1.0
    """ZeRO-3 only: share of the optimizer states stepped on the CPU (the rest stays on the GPU). 1: all."""
    super_offload: bool = False
    """ZeRO-3 + offload_optimizer, on NVIDIA GPUs: DeepSpeed's SuperOffload, which steps each parameter group on the
    CPU as soon as its gradients arrive, overlapped with the rest of backward. Needs optim.grad_clip=0: with clipping
    DeepSpeed 0.19 waits for the global norm and steps after backward (the config refuses the pair)."""
    save_every: int = 0
    """Save a checkpoint every N optimizer steps (and at the end); 0: never."""
    resume: Optional[str] = None
    """null, latest (newest checkpoint of this run directory, if any) or a checkpoint directory."""
    eval_every: int = 0
    """Evaluate every N steps on held-out rows, sharded like training (0: never)."""
    eval_steps: int = 2
    """Micro-batches per evaluation."""
    device: str = "auto"
    """auto (cuda when present), cuda or cpu."""
    peak_tflops_per_gpu: float = 0.0
    """Peak dense TFLOP/s of one card for MFU; 0: from the card's name (H100/H200: 989)."""
    reduce_bucket_size: int = 125_000_000
    """ZeRO reduce / prefetch bucket elements: 1.25e8 adds about 1 GB at fp32, 5e8 about 4 GB."""
    sp_comm_dtype: str = "auto"
    """dtype of the Ulysses all-to-all (auto: the model's dtype)."""
    deepspeed: Dict[str, Any] = field(default_factory=dict)
    """Raw DeepSpeed config merged over the generated one (expert escape hatch)."""
    dump_grads: bool = False
    """Debug: write the full fp32 gradients (before clipping) of this run's first optimizer step to
    <run_dir>/grads_step<N>.pt, a dict keyed like the HF model's parameters. For correctness tests."""


def deepspeed_config(ecfg, *, grad_clip: float, dtype: torch.dtype) -> Dict[str, Any]:
    zero: Dict[str, Any] = {"stage": ecfg.zero_stage, "overlap_comm": True, "contiguous_gradients": True,
                            "reduce_bucket_size": ecfg.reduce_bucket_size}
    if ecfg.zero_stage == 3:
        zero.update(stage3_prefetch_bucket_size=ecfg.reduce_bucket_size, stage3_param_persistence_threshold=1e5,
                    stage3_gather_16bit_weights_on_model_save=False)
    if ecfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
        if ecfg.zero_stage == 3 and ecfg.offload_ratio < 1.0:
            zero["offload_optimizer"]["ratio"] = ecfg.offload_ratio
        if ecfg.super_offload:
            zero["offload_optimizer"]["super_offload"] = True
    if ecfg.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    comm = {"auto": dtype, "bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[ecfg.sp_comm_dtype]
    cfg = {
        "train_micro_batch_size_per_gpu": ecfg.micro_batch_size,
        "gradient_accumulation_steps": ecfg.gradient_accumulation_steps,
        "gradient_clipping": grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": dtype == torch.bfloat16},
        "fp16": {"enabled": dtype == torch.float16},
        "seq_parallel_communication_data_type": {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(comm, "fp32"),
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    over = ecfg.deepspeed
    return merge(cfg, OmegaConf.to_container(over, resolve=True) if OmegaConf.is_config(over) else dict(over))


def merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def memory_stats() -> Dict[str, float]:
    """Peak GPU memory since the last reset, host RSS, pinned host bytes now and at their peak since the last reset
    (the offloaded checkpoints live there during forward and backward), and the host's memory in use (GiB)."""
    import psutil

    vm = psutil.virtual_memory()
    out = {"host_rss_gib": psutil.Process().memory_info().rss / 2**30, "host_used_gib": (vm.total - vm.available)
           / 2**30, "peak_mem_gib": 0.0, "peak_reserved_gib": 0.0, "peak_mem_pct": 0.0, "pinned_gib": 0.0,
           "pinned_peak_gib": 0.0}
    if torch.cuda.is_available():
        total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
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


class Engine:
    """Runs the training loop on a DeepSpeed engine built from the module, optimizer and schedule given."""

    def __init__(self, *, ds_engine, batches, cfg, run_dir: str, tracker, flops_of_positions, world_size: int,
                 sp_size: int, start_step: int = 0, offload_activations: bool = False, offload_keep_layers: int = 1,
                 eval_batches=None, on_step=None):
        self.ds, self.batches, self.cfg, self.run_dir = ds_engine, batches, cfg, run_dir
        self.tracker, self.world, self.sp_size = tracker, world_size, sp_size
        self.flops_of_positions = flops_of_positions  # position_ids [b, s_local] -> training FLOPs of those tokens
        self.step, self.offload_activations, self.on_step = start_step, offload_activations, on_step
        self.offload = offload_context(offload_activations, offload_keep_layers)  # one for the run: buffers reused
        self.eval_batches = eval_batches  # () -> a fresh iterator over the held-out micro-batches
        # from_pretrained returns a model in eval mode, and transformers checkpoints a layer only in training mode:
        # without this, model.name_or_path runs silently trained without activation checkpointing (and dropout)
        ds_engine.train()
        self.rank = dist.get_rank()
        self.metrics = None
        if self.rank == 0:
            from framework.track import JsonlWriter

            self.metrics = JsonlWriter(os.path.join(run_dir, "metrics.jsonl"))
        from framework.track.flops import peak_tflops

        self.peak = peak_tflops(cfg.peak_tflops_per_gpu)
        self.last: Dict[str, Any] = {}
        self.peak_mem_gib = 0.0
        self.grads_dumped = False
        # SP partial gradients must be summed over the SP ranks. ZeRO-1/2 and ZeRO-3's all-reduce path divide by the DP
        # size only, but ZeRO-3's reduce-scatter path (the default) averages over all sp x dp ranks: scale the loss
        # that is back-propagated by sp_size there (tests/distributed/test_sp_equivalence.py checks the gradients).
        zero3_rs = ds_engine.zero_optimization_stage() == 3 and ds_engine.zero_reduce_scatter()
        self.backward_scale = float(sp_size) if sp_size > 1 and zero3_rs else 1.0

    def dump_grads(self):
        """engine.dump_grads: save every parameter's full gradient, reduced over DP/SP ranks, before the optimizer
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
        gas = self.cfg.gradient_accumulation_steps
        micro = [next(self.batches) for _ in range(gas)]
        # The step's loss is the sum of CE over every valid token of the step (all micro-steps, all DP replicas)
        # divided by their count, not a mean of per-micro-batch means. DeepSpeed divides the gradient by gas and
        # averages it over the DP ranks; undo both, so each micro-step back-propagates its SP group's CE sum / count.
        local_valid = sum(float((b["shift_labels"] != -100).sum()) for b in micro)  # CPU-GPU sync point
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
            if self.cfg.dump_grads and not self.grads_dumped and self.ds.is_gradient_accumulation_boundary():
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
        loss_x_n, n_valid, tokens, flops = self.reduce([loss_x_n, n_valid, tokens, flops])  # every rank
        grad_norm = self.ds.get_global_grad_norm()
        mem = memory_stats()
        tflops = flops / dt / self.world / 1e12
        m = {"step": self.step, "loss": loss_x_n / max(n_valid, 1), "seq_length": seq_len, "tokens": int(tokens),
             "tokens_per_s": tokens / dt, "tokens_per_s_per_gpu": tokens / dt / self.world,
             "tflops_per_gpu": tflops, "mfu": tflops / self.peak if self.peak else 0.0,
             "lr": lr, "grad_norm": float(grad_norm) if grad_norm is not None else 0.0,
             "step_time_s": dt, "forward_s": fwd_s, "backward_s": bwd_s, "optimizer_s": opt_s,
             **({"offloaded_gib": offloaded} if self.offload_activations else {}),  # this rank's, all micro-steps
             **mem}
        self.peak_mem_gib = max(self.peak_mem_gib, mem["peak_mem_gib"])
        return m

    def run(self) -> Dict[str, Any]:
        while self.step < self.cfg.max_steps:
            m = self.train_step()
            if self.cfg.eval_every and self.step % self.cfg.eval_every == 0:
                m["eval_loss"] = self.evaluate()
            self.last = m
            if self.rank == 0:
                self.metrics.write(m)
                self.tracker.log(m)
            if self.cfg.save_every and (self.step % self.cfg.save_every == 0 or self.step == self.cfg.max_steps):
                self.save()
            if self.on_step:
                self.on_step(self)
        if self.rank == 0:
            self.metrics.close()
        return self.last

    def evaluate(self) -> float:
        """Token-weighted loss over engine.eval_steps held-out micro-batches (the same ones every time), sharded like
        training: SP stays on, so evaluation fits wherever training does. All ranks must call this."""
        batches = self.eval_batches()
        loss_x_n = n_valid = 0.0
        self.ds.eval()
        with torch.no_grad():
            for _ in range(self.cfg.eval_steps):
                loss, n = self.ds(**next(batches))
                loss_x_n += float(loss) * float(n)  # CPU-GPU sync point
                n_valid += float(n)
        self.ds.train()
        loss_x_n, n_valid = self.reduce([loss_x_n, n_valid])  # every rank
        return loss_x_n / max(n_valid, 1)

    def save(self):
        """Save a ZeRO checkpoint under <run_dir>/checkpoints/step_N. All ranks must call this."""
        self.ds.save_checkpoint(os.path.join(self.run_dir, "checkpoints"), tag=f"step_{self.step}",
                                client_state={"step": self.step})


def find_checkpoint(resume: Optional[str], run_dir: str) -> Optional[tuple[str, Optional[str]]]:
    """(load_dir, tag) for engine.resume, or None to start fresh."""
    if not resume:
        return None
    if resume == "latest":
        ckpt = os.path.join(run_dir, "checkpoints")
        return (ckpt, None) if os.path.exists(os.path.join(ckpt, "latest")) else None
    path = resume.rstrip("/")
    if os.path.exists(os.path.join(path, "latest")):
        return path, None
    return os.path.dirname(path), os.path.basename(path)


def build_engine(module, *, cfg, optim, ds_cfg: Dict[str, Any], mpu, device_type: str):
    """Wrap `module` (model + loss) in a DeepSpeed engine with its optimizer and LR schedule."""
    import deepspeed

    from framework.engine.optim import build_optimizer, build_scheduler
    params = [p for p in module.parameters() if p.requires_grad]
    opt = build_optimizer(params, cfg=optim, offload=cfg.offload_optimizer or cfg.offload_params,
                          device_type=device_type)
    sched = build_scheduler(opt, cfg=optim, max_steps=cfg.max_steps)
    engine, *_ = deepspeed.initialize(model=module, optimizer=opt, lr_scheduler=sched, config=ds_cfg, mpu=mpu)
    return engine
