"""model.lora: LoRA adapters (peft) on the built model. The base weights are frozen; only the adapters' parameters
reach the optimizer (framework.engine.build takes the parameters that require gradients), so a LoRA run carries no
optimizer state, no fp32 master copy and no gradient for the base model: for an 8B model that is the 100+ GiB of CPU
Adam state that is the host-RAM wall of full fine-tuning."""

from framework.tracker.flops import head_dim, mlp_shape

ALL_LINEAR = "all-linear"


def targets(cfg):
    """peft's target_modules: the string "all-linear" (every linear layer but the LM head), or a list of names."""
    names = [str(t) for t in cfg.get("target_modules", [ALL_LINEAR])]
    return ALL_LINEAR if names == [ALL_LINEAR] else names


def peft_config(cfg):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets(cfg), task_type="CAUSAL_LM"
    )


def apply_lora(model, cfg):
    """Wrap the model in a peft LoRA model (`cfg`: model.lora). Under ZeRO-3 the base weights are already partitioned
    (zero.Init); the adapters are created whole and DeepSpeed partitions them when it builds the engine."""
    import warnings

    from peft import get_peft_model

    with warnings.catch_warnings():  # peft reads transformers' old name, which warns from transformers 5.2x on
        warnings.filterwarnings("ignore", r"`is_gradient_checkpointing` is deprecated", FutureWarning)
        return get_peft_model(model, peft_config(cfg))


def projection_shapes(text_config) -> dict:
    """(in, out) features of each linear layer of a decoder layer, by name, for the common decoder layout (Llama,
    Qwen, Mistral: q/k/v/o_proj and gate/up/down_proj)."""
    c = text_config
    h, d = c.hidden_size, head_dim(c)
    q, kv = c.num_attention_heads * d, c.num_key_value_heads * d
    inter, mats = mlp_shape(c)
    shapes = {
        "q_proj": (h, q),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (q, h),
        "up_proj": (h, inter),
        "down_proj": (inter, h),
    }
    if mats == 3:
        shapes["gate_proj"] = (h, inter)
    return shapes


def lora_params(text_config, cfg) -> int:
    """(`cfg`: model.lora, or a dict of its keys) Trainable parameters of the adapters: r x (in + out) per targeted
    linear layer, over all decoder layers."""
    r = int(cfg.get("r", 0) or 0)
    if r <= 0:
        return 0
    shapes = projection_shapes(text_config)
    chosen = targets(cfg)
    names = shapes if chosen == ALL_LINEAR else [n for n in shapes if any(n == t or n.endswith(t) for t in chosen)]
    return text_config.num_hidden_layers * sum(r * sum(shapes[n]) for n in names)
