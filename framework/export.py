"""The trained model out: a Hugging Face directory (config.json, safetensors weights sharded past 5 GB with an index,
generation_config.json, the tokenizer), or with LoRA the peft adapter (adapter_config.json,
adapter_model.safetensors), or the base model with the adapter merged into it (checkpoint.export_merged).

Two ways in, one writer:
- At the end of a successful run (checkpoint.export, default true) every rank calls `export_run`: under ZeRO-3 each
  parameter is gathered on its own (a collective), rank 0 copies it to the CPU and writes a shard once it holds 5 GB,
  so no rank ever holds the whole model.
- From a saved checkpoint, without GPUs: `python -m framework.export <run dir>/checkpoints/step_N <out dir>` reads
  DeepSpeed's fp32 master weights (lazily, one tensor at a time) and writes the same files, cast to the run's dtype.
Either way the directory is written under a temporary name and renamed when complete: it exists whole or not at all.
"""

import argparse
import json
import os
import shutil
import sys
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch

from framework.log import get_logger

log = get_logger(__name__)
MAX_SHARD_BYTES = 5 * 10**9
"""Weights per safetensors file before the next one starts (transformers' default max_shard_size, 5 GB)."""
ADAPTER = "default"
"""peft's name of the one adapter a run trains (it appears in parameter names: lora_A.default.weight)."""

Entry = Tuple[str, int, Callable[[], Optional[torch.Tensor]]]
"""(name in the file, bytes, get): get() returns the tensor on the writing rank and None elsewhere; under ZeRO-3 it
gathers a partitioned parameter, so every rank calls the gets of the same entries in the same order."""


def shards(entries: List[Entry], max_bytes: int = MAX_SHARD_BYTES) -> List[List[Entry]]:
    """Consecutive entries grouped into files of at most `max_bytes` (a larger tensor gets a file of its own)."""
    out: List[List[Entry]] = [[]]
    size = 0
    for e in entries:
        if out[-1] and size + e[1] > max_bytes:
            out.append([])
            size = 0
        out[-1].append(e)
        size += e[1]
    return out if out[0] else []


def write_weights(
    out_dir: str, entries: List[Entry], *, write: bool, stem: str = "model", max_bytes: int = MAX_SHARD_BYTES
):
    """<stem>.safetensors, or <stem>-0000i-of-0000n.safetensors and <stem>.safetensors.index.json past max_bytes.
    Every rank calls this with the same entries; only the one with write=True writes (and holds one file's tensors at
    a time)."""
    from safetensors.torch import save_file

    groups = shards(entries, max_bytes)
    weight_map: Dict[str, str] = {}
    for i, group in enumerate(groups):
        name = f"{stem}.safetensors" if len(groups) == 1 else f"{stem}-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {}
        for key, _, get in group:
            t = get()  # every rank: a collective under ZeRO-3
            if write:
                tensors[key] = t.contiguous()
        if write:
            save_file(tensors, os.path.join(out_dir, name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(tensors, name))
    if write and len(groups) > 1:
        index = {"metadata": {"total_size": sum(e[1] for e in entries)}, "weight_map": weight_map}
        with open(os.path.join(out_dir, f"{stem}.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)


# ------------------------------------------------------------------------------------------ the model in a run
def _nbytes(p: torch.Tensor) -> int:
    return getattr(p, "ds_numel", p.numel()) * p.element_size()


def _gather(params: List[torch.Tensor], write: bool, combine=None) -> Callable[[], Optional[torch.Tensor]]:
    """A get() for an Entry: the parameters whole (gathered under ZeRO-3, every rank), copied to the CPU on the
    writing rank, then combined (the first one by default)."""

    def get():
        import deepspeed

        partitioned = [p for p in params if hasattr(p, "ds_id")]
        with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=None, enabled=bool(partitioned)):
            if not write:
                return None
            whole = [p.detach().to("cpu", copy=True) for p in params]
        return combine(*whole) if combine else whole[0]

    return get


def _persistent_buffers(model) -> Iterable[Tuple[str, torch.Tensor]]:
    for mod_name, mod in model.named_modules():
        for name, buf in mod.named_buffers(recurse=False):
            if buf is not None and name not in mod._non_persistent_buffers_set:
                yield (f"{mod_name}.{name}" if mod_name else name), buf


def _lora_modules(model) -> Dict[str, torch.nn.Module]:
    """The modules peft gave an adapter, by name (they hold base_layer, lora_A, lora_B)."""
    return {n: m for n, m in model.named_modules() if hasattr(m, "lora_A") and ADAPTER in getattr(m, "lora_A", {})}


def model_entries(model, *, write: bool) -> List[Entry]:
    """A plain HF model's weights under their state_dict names (a tied weight once, as save_pretrained writes it)."""
    out = [(n, _nbytes(p), _gather([p], write)) for n, p in model.named_parameters()]
    return out + [(n, _nbytes(b), _gather([b], write)) for n, b in _persistent_buffers(model)]


def adapter_entries(model, *, write: bool) -> List[Entry]:
    """A peft model's adapter weights under peft's file names (the adapter's name dropped: lora_A.weight)."""
    return [
        (n.replace(f".{ADAPTER}.", "."), _nbytes(p), _gather([p], write))
        for n, p in model.named_parameters()
        if "lora_" in n
    ]


def base_name(peft_name: str) -> Tuple[str, Optional[str]]:
    """A peft model's parameter under the base model's own name, and the adapted module whose base weight it is (None
    for every other parameter)."""
    name = peft_name.removeprefix("base_model.model.").replace(".base_layer.", ".")
    owner = peft_name.rsplit(".base_layer.", 1)[0] if peft_name.endswith(".base_layer.weight") else None
    return name, owner


def merge(w: torch.Tensor, a: torch.Tensor, b: torch.Tensor, config) -> torch.Tensor:
    """One linear layer's weight with its adapter merged in by peft itself: the tensors put in peft's own LoRA layer
    (`config`: the adapter's peft LoraConfig), whose merge() applies the scaling, rsLoRA, fan_in_fan_out and whatever
    peft adds later as peft defines them. Computed in fp32 on the CPU, stored in W's dtype."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    with torch.device("meta"):
        base = torch.nn.Linear(a.shape[1], b.shape[0], bias=False)
    base.weight = torch.nn.Parameter(w.detach().float(), requires_grad=False)
    layer = LoraLinear(
        base,
        ADAPTER,
        config=config,
        r=config.r,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.0,
        fan_in_fan_out=config.fan_in_fan_out,
        init_lora_weights=False,
        use_rslora=config.use_rslora,
    )
    with torch.no_grad():
        layer.lora_A[ADAPTER].weight.copy_(a)
        layer.lora_B[ADAPTER].weight.copy_(b)
    layer.merge(safe_merge=True, adapter_names=[ADAPTER])  # safe_merge: a NaN/inf in the result is an error
    return base.weight.detach().to(w.dtype)


def merged_entries(model, *, write: bool) -> List[Entry]:
    """A peft model's base weights with each adapter merged in by peft (`merge`), under the base model's own names:
    a plain HF model's weights."""
    lora = _lora_modules(model)
    config = model.peft_config[ADAPTER]
    out = []
    for n, p in model.named_parameters():
        if "lora_" in n:
            continue
        name, owner = base_name(n)
        if owner in lora:
            m = lora[owner]
            a, b = m.lora_A[ADAPTER].weight, m.lora_B[ADAPTER].weight
            out.append((name, _nbytes(p), _gather([p, a, b], write, lambda w, a_, b_: merge(w, a_, b_, config))))
        else:
            out.append((name, _nbytes(p), _gather([p], write)))
    base = model.get_base_model()
    return out + [(n, _nbytes(b_), _gather([b_], write)) for n, b_ in _persistent_buffers(base)]


# ------------------------------------------------------------------------------------------------- the directory
def write_config(out_dir: str, model_config, *, dtype: torch.dtype, architecture: Optional[str], generation=None):
    """config.json as a user loads it: the trained dtype, use_cache back on (training turns it off)."""
    config = model_config.__class__.from_dict(model_config.to_dict())
    config.dtype = dtype
    config.use_cache = True
    if architecture:
        config.architectures = [architecture]
    config.save_pretrained(out_dir)
    if generation is not None:
        generation.save_pretrained(out_dir)


def write_tokenizer(out_dir: str, tokenizer_path: Optional[str]) -> bool:
    """The tokenizer's files beside the weights; False (and one line) where the run had no tokenizer: random
    weights on synthetic tokens, or a model directory without one."""
    if not tokenizer_path:
        log.info("export: no tokenizer to write (synthetic tokens, no data.tokenizer)")
        return False
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(tokenizer_path)
    except Exception:  # noqa: BLE001  (no tokenizer files there: transformers raises OSError, ValueError or others)
        log.info(f"export: no tokenizer written ({tokenizer_path} holds none that transformers can load)")
        return False
    tok.save_pretrained(out_dir)
    return True


def publish(tmp: str, final: str):
    """Move the complete directory into place (an older export there is replaced only once the new one is whole)."""
    old = None
    if os.path.exists(final):
        old = f"{final}.old{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def export_run(
    model, *, run_dir: str, lora: bool, merged: bool, tokenizer_path: Optional[str], base_name_or_path: Optional[str]
) -> Optional[str]:
    """Write <run_dir>/model/ from the model in training (`model`: the HF model, or the peft model with LoRA). All
    ranks must call this; rank 0 writes. Returns the directory on rank 0."""
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_initialized() else 0
    write = rank == 0
    final = os.path.join(run_dir, "model")
    tmp = os.path.join(run_dir, f".model.tmp{os.getpid()}")
    if write:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    base = model.get_base_model() if lora else model
    dtype = next(p for p in base.parameters()).dtype
    if lora and not merged:
        write_weights(tmp, adapter_entries(model, write=write), write=write, stem="adapter_model")
        if write:
            config = model.peft_config[ADAPTER]
            config.base_model_name_or_path = base_name_or_path
            config.save_pretrained(tmp)
    else:
        write_weights(
            tmp, merged_entries(model, write=write) if lora else model_entries(model, write=write), write=write
        )
        if write:
            write_config(
                tmp,
                base.config,
                dtype=dtype,
                architecture=type(base).__name__,
                generation=getattr(base, "generation_config", None),
            )
    if write:
        write_tokenizer(tmp, tokenizer_path)
        publish(tmp, final)
        log.info(f"export: {'LoRA adapter' if lora and not merged else 'model'} written to {final}")
    if dist.is_initialized():
        dist.barrier()  # every rank: nobody leaves before the directory is complete
    return final if write else None


# --------------------------------------------------------------------------------------- from a saved checkpoint
def checkpoint_parts(checkpoint: str) -> Tuple[str, str, str]:
    """(run dir, checkpoints dir, tag) for <run>/checkpoints/step_N, or <run>/checkpoints (its newest complete one:
    framework.checkpoint's manifest rule, as checkpoint.resume=latest takes it)."""
    from framework.checkpoint import is_checkpoints_root, newest_complete

    path = os.path.abspath(checkpoint.rstrip("/"))
    if is_checkpoints_root(path):
        newest, _ = newest_complete(path)
        path = newest or os.path.join(path, "none-complete")
    return os.path.dirname(os.path.dirname(path)), os.path.dirname(path), os.path.basename(path)


def checkpoint_dtype(step_dir: str) -> torch.dtype:
    """The dtype the run trained in, as its checkpoint recorded it (client state `dtype`); fp32 if it did not."""
    files = sorted(f for f in os.listdir(step_dir) if f.endswith("model_states.pt"))
    state = torch.load(os.path.join(step_dir, files[0]), map_location="cpu", weights_only=False)
    return getattr(torch, str(state.get("dtype", "torch.float32")).removeprefix("torch."))


def export_checkpoint(checkpoint: str, out_dir: str, *, merged: Optional[bool] = None) -> str:
    """Write the model of a saved checkpoint to `out_dir` as the run's own export would (same names, dtype, files),
    on the CPU. The run's config.yaml (beside checkpoints/) says which model, LoRA and tokenizer it was."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from omegaconf import OmegaConf

    from framework.model import hf_config

    run_dir, ckpt_dir, tag = checkpoint_parts(checkpoint)
    cfg = OmegaConf.load(os.path.join(run_dir, "config.yaml"))
    lora = cfg.model.get("lora") or {}
    is_lora = int(lora.get("r", 0) or 0) > 0
    merged = bool(cfg.checkpoint.get("export_merged", False)) if merged is None else merged
    dtype = checkpoint_dtype(os.path.join(ckpt_dir, tag))
    state = get_fp32_state_dict_from_zero_checkpoint(ckpt_dir, tag=tag, lazy_mode=True)
    state = {k.removeprefix("model."): v for k, v in state.items()}  # the module DeepSpeed ran: model + loss
    config = hf_config(name_or_path=cfg.model.name_or_path, arch=cfg.model.arch)
    if getattr(config.get_text_config(), "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
        state.pop("base_model.model.lm_head.weight", None)

    def get(key):
        return lambda: state[key].contiguous().to(dtype)

    tmp = f"{out_dir.rstrip('/')}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    nbytes = {k: _numel(v) * dtype.itemsize for k, v in state.items()}
    if is_lora and not merged:
        entries = [(k.replace(f".{ADAPTER}.", "."), nbytes[k], get(k)) for k in state if "lora_" in k]
        write_weights(tmp, entries, write=True, stem="adapter_model")
        from framework.model.lora import peft_config

        pc = peft_config(OmegaConf.create(dict(lora)))
        pc.base_model_name_or_path = cfg.model.name_or_path
        pc.save_pretrained(tmp)
    else:
        from framework.model.lora import peft_config

        pc = peft_config(OmegaConf.create(dict(lora))) if is_lora else None
        entries = []
        for k in state:
            if "lora_" in k:
                continue
            name, owner = base_name(k)
            if is_lora and owner:
                a, b = f"{owner}.lora_A.{ADAPTER}.weight", f"{owner}.lora_B.{ADAPTER}.weight"
                entries.append((name, nbytes[k], lambda k=k, a=a, b=b: merge(get(k)(), get(a)(), get(b)(), pc)))
            else:
                entries.append((name, nbytes[k], get(k)))
        write_weights(tmp, entries, write=True)
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            arch = type(AutoModelForCausalLM.from_config(config)).__name__
        write_config(
            tmp, config, dtype=dtype, architecture=arch, generation=generation_config(cfg.model.name_or_path, config)
        )
    write_tokenizer(tmp, cfg.data.get("tokenizer") or cfg.model.name_or_path)
    publish(tmp, out_dir)
    return out_dir


def _numel(t) -> int:
    shape = getattr(t, "shape", None)
    return int(torch.Size(shape).numel()) if shape is not None else t.contiguous().numel()


def generation_config(name_or_path: Optional[str], config):
    """The generation config transformers gives the model: the directory's generation_config.json, else one made
    from the model config (what from_config does)."""
    from transformers import GenerationConfig

    if name_or_path and os.path.exists(os.path.join(name_or_path, "generation_config.json")):
        return GenerationConfig.from_pretrained(name_or_path)
    return GenerationConfig.from_model_config(config)


def main(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(
        prog="python -m framework.export",
        description=("Write a saved checkpoint's model as a Hugging Face directory (or a LoRA adapter), on the CPU."),
    )
    parser.add_argument("checkpoint", help="<run dir>/checkpoints/step_N, or <run dir>/checkpoints for the newest")
    parser.add_argument("out_dir", help="the directory to write (replaced once the new one is complete)")
    parser.add_argument(
        "--merged",
        action="store_true",
        default=None,
        help="with LoRA: the base model with the adapter merged in (default: checkpoint.export_merged)",
    )
    args = parser.parse_args(argv)
    from framework.checkpoint import incomplete_reason

    run_dir, ckpt_dir, tag = checkpoint_parts(args.checkpoint)
    if not os.path.isdir(os.path.join(ckpt_dir, tag)) or not os.path.exists(os.path.join(run_dir, "config.yaml")):
        log.error(
            f"export: {args.checkpoint} is not a checkpoint of a run directory (expected <run dir>/checkpoints/"
            "step_N beside <run dir>/config.yaml)"
        )
        sys.exit(2)
    why = incomplete_reason(os.path.join(ckpt_dir, tag))
    if why:
        log.error(f"export: {os.path.join(ckpt_dir, tag)} is not a complete checkpoint ({why})")
        sys.exit(2)
    log.info(f"export: {export_checkpoint(args.checkpoint, args.out_dir, merged=args.merged)}")


if __name__ == "__main__":
    main()
