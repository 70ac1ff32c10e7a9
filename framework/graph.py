"""Build the object graph from the config, one group at a time in dependency order, and run it (on every rank).

mesh → model (+ ALST features, LoRA) → SP attention → dataloader adapter → loss → engine, run by the trainer (the
step loop) → the export of the trained model. Each group's `_target_` names its builder, called with the group's
config as `cfg` and the runtime objects built before it.
"""
import os
import random
from typing import Any, Dict

import torch
import torch.distributed as dist
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from framework.checkpoint import load_checkpoint, run_settings
from framework.data import held_out_data
from framework.data.adapter import SPBatches
from framework.engine import CausalLMWithLoss, deepspeed_config
from framework.export import export_run
from framework.log import get_logger
from framework.model import announce_zero3, resolve_dtype
from framework.model.features import apply_features
from framework.parallelism import MeshAxis, dp_rank_and_size, sequence_group
from framework.plan.memory import keep_layers
from framework.env import VALIDATED_ENV
from framework.runtime import since_start
from framework.runtime import device_type as resolve_device
from framework.trainer import Trainer
from framework.tracker.flops import flops_of_positions

log = get_logger(__name__)

def call(node: DictConfig, *args, **runtime):
    """Call the builder named by `node._target_` with the group's config and the runtime objects."""
    return get_method(node._target_)(*args, cfg=node, **runtime)


def seed_everything(seed: int):
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass


def first_step(trainer, startup: dict):
    """After the first step this process ran: when it ended, since the command started; rank 0 says the phases."""
    if "first_step_s" in startup:
        return
    startup["first_step_s"] = since_start()
    names = {"validated_s": "validated", "worker_s": "workers up", "model_s": "model built",
             "engine_s": "engine built", "first_step_s": "first step done"}
    log.info("startup: " + ", ".join(f"{names[k]} {v:.1f} s" for k, v in startup.items()))


def build_and_run(cfg: DictConfig, run_dir: str) -> Dict[str, Any]:
    """Everything a rank does after the process group exists. Returns the last step's metrics."""
    startup = {"validated_s": float(os.environ.get(VALIDATED_ENV, "nan")), "worker_s": since_start()}
    device_type = resolve_device(cfg.engine.device)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(device_type, int(os.environ.get("LOCAL_RANK", 0))) if device_type == "cuda" else \
        torch.device("cpu")
    if device_type == "cuda":
        torch.cuda.set_device(device)
    seed_everything(cfg.engine.seed)

    # 1. mesh
    mesh = call(cfg.parallelism, device_type=device_type)
    # the ranks that share one sequence (loss, data, gradient sums): the SP group, or with ring attention the
    # cp x sp ranks (cp_size = 1 leaves it the SP group)
    sp_group, sp_rank, sp_size = sequence_group(mesh)
    cp_size = mesh[MeshAxis.CP.value].size()
    dp_rank, dp_size = dp_rank_and_size(mesh)

    # 2. model; under ZeRO-3 transformers partitions the weights as it creates or loads them (zero.Init), so no
    # rank ever holds the whole model, and initializes random weights gathered one module at a time
    dtype = resolve_dtype(cfg.model.dtype, device_type)
    ds_cfg = deepspeed_config(cfg.engine, grad_clip=cfg.optim.grad_clip, dtype=dtype)
    if cfg.engine.zero_stage == 3:
        announce_zero3(ds_cfg)
    attn = cfg.attention.implementation
    attn = getattr(attn, "value", attn)
    model = call(cfg.model, attn_implementation=attn, device_type=device_type)
    model = apply_features(model, cfg=cfg.model)  # with LoRA: the peft model around it
    if cfg.model.offload_activations and device_type == "cpu":
        log.info("note: model.offload_activations does nothing on CPU (the hidden states already live in host memory)")

    startup["model_s"] = since_start()

    # 3. SP attention (DeepSpeed's Ulysses, registered with transformers); its groups are the mesh's
    seq_len = cfg.parallelism.sp_seq_length or cfg.data.seq_length
    mpu = call(cfg.attention, model, mesh=mesh, micro_batch_size=cfg.engine.micro_batch_size,
               seq_length_is_variable=cfg.parallelism.sp_seq_length_is_variable, seq_length=seq_len)

    # 5. loss, and the module DeepSpeed runs (model + loss)
    loss = call(cfg.loss, sp_group=sp_group if sp_size > 1 else None, liger=cfg.model.liger)
    module = CausalLMWithLoss(model, loss)

    # 6. engine (DeepSpeed), resumed from a checkpoint if asked
    ds_engine = call(cfg.engine, module, optim=cfg.optim, ds_cfg=ds_cfg, mpu=mpu, device_type=device_type)
    start_step = load_checkpoint(ds_engine, cfg.engine.resume, run_dir)
    startup["engine_s"] = since_start()

    # 4. data: per-rank loader (who reads what: StepSampler) + the SP adapter
    micro_done = start_step * cfg.engine.gradient_accumulation_steps
    tok_path = cfg.data.tokenizer or cfg.model.name_or_path
    text_config = model.config.get_text_config()
    vocab = text_config.vocab_size

    def loader(data_cfg, seed: int, start_step: int):
        return call(data_cfg, vocab_size=vocab, tokenizer_path=tok_path, dp_rank=dp_rank, dp_size=dp_size,
                    sp_rank=sp_rank, sp_size=sp_size, micro_batch_size=cfg.engine.micro_batch_size, seed=seed,
                    start_step=start_step, multiple_of=sp_size * (2 if cp_size > 1 else 1))

    batches = SPBatches(loader(cfg.data, cfg.engine.seed, micro_done), sp_group=sp_group, sp_rank=sp_rank,
                        sp_size=sp_size, device=device, skip=micro_done % sp_size, cp_size=cp_size)
    eval_batches = None
    if cfg.engine.eval_every:
        held_out = held_out_data(cfg.data)

        def eval_batches():  # synthetic rows are a function of (seed, index): seed + 1 gives rows never trained on
            return SPBatches(loader(held_out, cfg.engine.seed + 1, 0), sp_group=sp_group, sp_rank=sp_rank,
                             sp_size=sp_size, device=device, cp_size=cp_size)

    tracker = None
    if rank == 0:
        tracker = call(cfg.tracker, run_dir=run_dir, config=OmegaConf.to_container(cfg, resolve=True))
    model_config = model.config

    # 7. the step loop
    trainer = Trainer(ds_engine=ds_engine, batches=batches, cfg=cfg.engine, run_dir=run_dir, tracker=tracker,
                      flops_of_positions=lambda pos: flops_of_positions(model_config, pos), world_size=world,
                      sp_size=sp_size, start_step=start_step, offload_activations=cfg.model.offload_activations,
                      offload_keep_layers=keep_layers(cfg, world, text_config), eval_batches=eval_batches,
                      run_settings=run_settings(parallelism=cfg.parallelism, data=cfg.data, engine=cfg.engine,
                                                optim=cfg.optim, tokenizer=tok_path, world=world),
                      on_step=lambda t: first_step(t, startup))
    try:
        last = trainer.run()
    finally:
        if tracker is not None:
            tracker.finish({"peak_mem_gib": trainer.peak_mem_gib, **trainer.last})
    last["peak_mem_gib"] = max(trainer.peak_mem_gib, last.get("peak_mem_gib", 0.0))
    last["startup"] = startup

    # 8. the trained model out (every rank: ZeRO-3 gathers one parameter at a time; rank 0 writes)
    if cfg.engine.export:
        export_run(model, run_dir=run_dir, lora=cfg.model.lora.r > 0, merged=cfg.engine.export_merged,
                   tokenizer_path=tok_path, base_name_or_path=cfg.model.name_or_path)
    return last
