"""AdamW: DeepSpeed's CPU Adam when the optimizer is offloaded, torch's (fused on GPU) otherwise."""

import torch
from framework.builder import builds
from framework.optim.config import OptimConfig


@builds(OptimConfig)
def build_optimizer(params, *, cfg, offload: bool, device_type: str):
    kw = dict(lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(params, adamw_mode=True, **kw)
    return torch.optim.AdamW(params, fused=device_type == "cuda", **kw)
