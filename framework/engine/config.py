"""engine's config: the DeepSpeed ZeRO engine (stage, offload, buckets) and the step loop that runs it (steps, batch,
checkpoints, evaluation)."""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from framework.choice import Choice


class Device(Choice):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class NonFinite(Choice):
    stop = "stop"
    skip = "skip"


class CommDtype(Choice):
    auto = "auto"
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


@dataclass
class EngineConfig:
    _target_: str = "framework.engine.build.build_engine"
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
    """null (a fresh run: the run directory must hold no earlier run), latest (the newest complete checkpoint of this
    run directory; none is an error), a checkpoints/ folder (its newest complete one) or one checkpoints/step_N."""
    resume_allow_changes: bool = False
    """Resume even though a setting the data order or LR schedule depends on (sp_size, seq_length, data, batch,
    seed, max_steps, schedule, ...) differs from the checkpoint's: rows may be skipped or repeated, the LR may jump."""
    trust_resume: bool = False
    """Load an engine.resume outside this run directory. DeepSpeed unpickles checkpoints (torch.load with
    weights_only=False): a file someone else wrote can run code in this job."""
    on_nonfinite: NonFinite = NonFinite.stop
    """A step whose loss or gradient norm is NaN/inf: stop the job naming the step, or skip it (DeepSpeed applies no
    update and the LR schedule does not move; the data moves on). A skip DeepSpeed could not make stops the job."""
    save_on_interrupt: bool = False
    """On SIGTERM (schedulers send it before the kill), finish the step, save a checkpoint, then stop. The launcher
    gives its workers 30 s after the signal: a step plus a save must fit in it."""
    keep_last: int = 0
    """Complete checkpoints kept; older ones are deleted once a newer one is complete. 0: keep all."""
    export: bool = True
    """At the end of a successful run, write the trained model to <run_dir>/model/ as a Hugging Face directory
    (config, safetensors, generation config, tokenizer), or with LoRA the peft adapter."""
    export_merged: bool = False
    """With LoRA: export the base model with the adapter merged into it (a plain Hugging Face model) instead of the
    adapter alone."""
    eval_every: int = 0
    """Evaluate every N steps on held-out rows, sharded like training (0: never)."""
    eval_steps: int = 2
    """Micro-batches per evaluation."""
    timeout_minutes: int = 30
    """Minutes a collective (and the start, while rank 0 validates and tokenizes) may wait before the job fails."""
    device: Device = Device.auto
    """auto (cuda when present), cuda or cpu."""
    peak_tflops_per_gpu: float = 0.0
    """Peak dense TFLOP/s of one card for MFU; 0: from the card's name (H100/H200: 989)."""
    reduce_bucket_size: int = 125_000_000
    """ZeRO reduce / prefetch bucket elements: 1.25e8 adds about 1 GB at fp32, 5e8 about 4 GB."""
    sp_comm_dtype: CommDtype = CommDtype.auto
    """dtype of the Ulysses all-to-all (auto: the model's dtype)."""
    deepspeed: Dict[str, Any] = field(default_factory=dict)
    """Raw DeepSpeed config merged over the generated one (expert escape hatch)."""
    dump_grads: bool = False
    """Debug: write the full fp32 gradients (before clipping) of this run's first optimizer step to
    <run_dir>/grads_step<N>.pt, a dict keyed like the HF model's parameters. For correctness tests."""
