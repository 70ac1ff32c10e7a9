"""Build the object graph from the config, one group at a time in dependency order, and run it (on every rank).

mesh → model (+ ALST features, LoRA) → SP attention → dataloader adapter → loss → engine, run by the trainer (the
step loop) → the export of the trained model. Each group's `_target_` names its builder, built with
hydra.utils.instantiate(cfg.<group>, *runtime) from the group's fields and the runtime objects built before it
(framework.builder).
"""

import os
import random
from dataclasses import dataclass
from typing import Any, Dict

import torch
import torch.distributed as dist
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf

from framework.checkpoint import run_settings
from framework.data import held_out_data
from framework.data.config import token_ids_only
from framework.data.adapter import SPBatches, shard_row
from framework.engine import CausalLMWithLoss, deepspeed_config
from framework.export import export_run
from framework.log import get_logger
from framework.model import announce_zero3, resolve_dtype
from framework.model.features import apply_features
from framework.optim import build_scheduler
from framework.parallelism import MeshAxis, dp_rank_and_size, row_pieces, sequence_group
from framework.plan.memory import keep_layers
from framework.env import JOB_STARTED_ENV, VALIDATED_ENV
from framework.runtime import since_start
from framework.runtime import device_type as resolve_device
from framework.tracker.flops import flops_of_positions

log = get_logger(__name__)


def seed_everything(seed: int):
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass


def first_step(trainer, startup: dict):
    """After the first step this process ran: when it ended, since the command started; rank 0 says the phases (in
    a multirun's later jobs, since the job started)."""
    if "first_step_s" in startup:
        return
    startup["first_step_s"] = since_start()
    names = {
        "validated_s": "validated",
        "worker_s": "workers up",
        "model_s": "model built",
        "engine_s": "engine built",
        "first_step_s": "first step done",
    }
    t0 = startup["job_started_s"]
    since = f" (since this job started, {t0:.1f} s into the command)" if t0 else ""
    log.info(f"startup{since}: " + ", ".join(f"{names[k]} {v - t0:.1f} s" for k, v in startup.items() if k in names))


def instantiate(node: DictConfig, *args, **runtime):
    """hydra.utils.instantiate of a group's node with the runtime objects; runtime dicts and lists reach the builder
    as plain dicts and lists (DeepSpeed's config, the checkpoint settings), not as OmegaConf containers, and are not
    instantiated themselves (the run config the tracker logs holds every group's `_target_`)."""
    return hydra_instantiate(node, *args, _convert_="partial", _recursive_=False, **runtime)


@dataclass
class Parts:
    """What `build` made on this rank, in the order `run` uses it."""

    trainer: Any
    tracker: Any
    model: Any
    startup: Dict[str, float]
    tokenizer_path: Any


def build(cfg: DictConfig, run_dir: str) -> Parts:
    """Every group built on this rank, in dependency order (all ranks must call this: the mesh, ZeRO-3's partitioned
    model and DeepSpeed's engine are collective)."""
    startup = {
        "job_started_s": float(os.environ.get(JOB_STARTED_ENV, "0")),
        "validated_s": float(os.environ.get(VALIDATED_ENV, "nan")),
        "worker_s": since_start(),
    }
    device_type = resolve_device(cfg.train.device)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = (
        torch.device(device_type, int(os.environ.get("LOCAL_RANK", 0)))
        if device_type == "cuda"
        else torch.device("cpu")
    )
    if device_type == "cuda":
        torch.cuda.set_device(device)
    seed_everything(cfg.train.seed)

    # 1. mesh
    mesh = instantiate(cfg.parallelism, device_type=device_type)
    # the ranks that share one sequence (loss, data, gradient sums): the SP group, or with ring attention the
    # cp x sp ranks (cp_size = 1 leaves it the SP group)
    sp_group, sp_rank, sp_size = sequence_group(mesh)
    cp_size = mesh[MeshAxis.CP.value].size()
    dp_rank, dp_size = dp_rank_and_size(mesh)

    # 2. model; under ZeRO-3 transformers partitions the weights as it creates or loads them (zero.Init), so no
    # rank ever holds the whole model, and initializes random weights gathered one module at a time
    dtype = resolve_dtype(cfg.model.dtype, device_type)
    ds_cfg = deepspeed_config(
        cfg.engine,
        grad_clip=cfg.optim.grad_clip,
        dtype=dtype,
        micro_batch_size=cfg.train.micro_batch_size,
        gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
    )
    if cfg.engine.zero_stage == 3:
        announce_zero3(ds_cfg)
    attn = cfg.attention.implementation
    attn = getattr(attn, "value", attn)
    model = instantiate(cfg.model, attn_implementation=attn, device_type=device_type)
    model = apply_features(model, cfg=cfg.model)  # with LoRA: the peft model around it
    if cfg.model.offload_activations and device_type == "cpu":
        log.info("note: model.offload_activations does nothing on CPU (the hidden states already live in host memory)")

    startup["model_s"] = since_start()

    # 3. SP attention (DeepSpeed's Ulysses, registered with transformers); its groups are the mesh's
    seq_len = cfg.parallelism.sp_seq_length or cfg.data.seq_length
    mpu = instantiate(
        cfg.attention,
        model,
        mesh=mesh,
        micro_batch_size=cfg.train.micro_batch_size,
        seq_length_is_variable=cfg.parallelism.sp_seq_length_is_variable,
        seq_length=seq_len,
    )

    # 5. loss, and the module DeepSpeed runs (model + loss)
    loss = instantiate(cfg.loss, sp_group=sp_group if sp_size > 1 else None, liger=cfg.model.liger)
    module = CausalLMWithLoss(model, loss)

    # 6. engine (DeepSpeed), resumed from a checkpoint if asked
    tok_path = cfg.data.tokenizer or cfg.model.name_or_path
    settings = run_settings(
        parallelism=cfg.parallelism, data=cfg.data, train=cfg.train, optim=cfg.optim, tokenizer=tok_path, world=world
    )
    checkpointer = instantiate(cfg.checkpoint, run_dir=run_dir, settings=settings)
    optimizer = scheduler = None  # eval.only: forward only, no optimizer state
    if not cfg.eval.only:
        params = [p for p in module.parameters() if p.requires_grad]
        optimizer = instantiate(
            cfg.optim,
            params,
            offload=cfg.engine.offload_optimizer or cfg.engine.offload_params,
            device_type=device_type,
        )
        scheduler = build_scheduler(optimizer, cfg=cfg.optim, max_steps=cfg.train.max_steps)
    ds_engine = instantiate(cfg.engine, module, optimizer=optimizer, scheduler=scheduler, ds_cfg=ds_cfg, mpu=mpu)
    start_step = 0 if cfg.eval.only else checkpointer.load(ds_engine)  # every rank
    startup["engine_s"] = since_start()

    # 4. data: per-rank loader (who reads what: StepSampler) + the SP adapter
    micro_done = start_step * cfg.train.gradient_accumulation_steps
    text_config = model.config.get_text_config()
    vocab = text_config.vocab_size

    def loader(data_cfg, seed: int, start_step: int):
        return instantiate(
            data_cfg,
            vocab_size=vocab,
            tokenizer_path=tok_path,
            dp_rank=dp_rank,
            dp_size=dp_size,
            sp_rank=sp_rank,
            sp_size=sp_size,
            micro_batch_size=cfg.train.micro_batch_size,
            seed=seed,
            start_step=start_step,
            multiple_of=sp_size * (2 if cp_size > 1 else 1),
        )

    batches = SPBatches(
        loader(cfg.data, cfg.train.seed, micro_done),
        sp_group=sp_group,
        sp_rank=sp_rank,
        sp_size=sp_size,
        device=device,
        skip=micro_done % sp_size,
        cp_size=cp_size,
    )
    eval_batches = None
    if cfg.eval.every or cfg.eval.only:
        held_out = held_out_data(cfg.data)

        def eval_batches():  # synthetic rows are a function of (seed, index): seed + 1 gives rows never trained on
            return SPBatches(
                loader(held_out, cfg.train.seed + 1, 0),
                sp_group=sp_group,
                sp_rank=sp_rank,
                sp_size=sp_size,
                device=device,
                cp_size=cp_size,
            )

    evaluator = instantiate(
        cfg.eval,
        batches=eval_batches,
        run_dir=run_dir,
        seed=cfg.train.seed + 2,
        shard=lambda t: shard_row(t, seq_rank=sp_rank, sp_size=sp_size // cp_size, cp_size=cp_size).to(device),
        seq_length=max(list(cfg.data.lengths) or [cfg.data.seq_length]),
        pieces=row_pieces(sp_size // cp_size, cp_size),
        vocab_size=vocab,
        filler_vocab=cfg.data.filler_vocab,
        dp_rank=dp_rank,
        dp_size=dp_size,
        tokenizer_path=None if token_ids_only(cfg.data) else tok_path,
    )
    tracker = None
    if rank == 0:
        tracker = instantiate(cfg.tracker, run_dir=run_dir, run_config=OmegaConf.to_container(cfg, resolve=True))
    model_config = model.config

    # 7. the step loop
    trainer = instantiate(
        cfg.train,
        ds_engine=ds_engine,
        batches=batches,
        checkpointer=checkpointer,
        evaluator=evaluator,
        peak_tflops=cfg.hardware.peak_tflops,
        run_dir=run_dir,
        tracker=tracker,
        flops_of_positions=lambda pos: flops_of_positions(model_config, pos),
        world_size=world,
        sp_size=sp_size,
        start_step=start_step,
        offload_activations=cfg.model.offload_activations,
        offload_keep_layers=keep_layers(cfg, world, text_config),
        on_step=lambda t: first_step(t, startup),
    )
    return Parts(trainer=trainer, tracker=tracker, model=model, startup=startup, tokenizer_path=tok_path)


def run(parts: Parts, cfg: DictConfig, run_dir: str) -> Dict[str, Any]:
    """The step loop, the tracker's last record, then the export. Returns the last step's metrics."""
    trainer, tracker = parts.trainer, parts.tracker
    if cfg.eval.only:
        return evaluate_only(parts, cfg)
    try:
        last = trainer.run()
    finally:
        if tracker is not None:
            tracker.finish({"peak_mem_gib": trainer.peak_mem_gib, **trainer.last})
    last["peak_mem_gib"] = max(trainer.peak_mem_gib, last.get("peak_mem_gib", 0.0))
    last["startup"] = parts.startup

    # the trained model out (every rank: ZeRO-3 gathers one parameter at a time; rank 0 writes)
    ckpt = trainer.checkpointer
    if ckpt.export:
        export_run(
            parts.model,
            run_dir=run_dir,
            lora=cfg.model.lora.r > 0,
            merged=ckpt.export_merged,
            tokenizer_path=parts.tokenizer_path,
            base_name_or_path=cfg.model.name_or_path,
        )
    return last


def evaluate_only(parts: Parts, cfg: DictConfig) -> Dict[str, Any]:
    """eval.only: one evaluation of the model as loaded (step 0), written as a step record of metrics.jsonl and the
    eval/ files; no training, no checkpoint, no export. All ranks must call this."""
    from framework.train.trainer import memory_stats, reset_peaks

    trainer, tracker = parts.trainer, parts.tracker
    reset_peaks()
    m = {"step": 0, "seq_length": cfg.data.seq_length, **trainer.evaluator.run(trainer.ds, step=0)}  # every rank
    m.update(memory_stats(), device_name=trainer.device_name)
    trainer.last, trainer.peak_mem_gib = m, m["peak_mem_gib"]
    if trainer.rank == 0:
        trainer.metrics.write(m)
        trainer.metrics.close()
        tracker.log(m)
        tracker.finish(dict(m))
    return {**m, "startup": parts.startup}


def build_and_run(cfg: DictConfig, run_dir: str) -> Dict[str, Any]:
    """Everything a rank does after the process group exists. Returns the last step's metrics."""
    return run(build(cfg, run_dir), cfg, run_dir)
