"""The peer to beat: the reference recipe of HF Accelerate + DeepSpeed ALST/Ulysses SP, as its docs give it.

Run (from the project root): torchrun --nproc_per_node N experiments/alst_2gpu/peer_recipe.py --arch 8b --seqlens
32768,65536 --zero 3 --offload Prints one JSON line per sequence length: step seconds, tokens/s, peak GiB; stops at the
first OOM. Random-init weights (no hub here); the architecture alone decides speed and memory."""

import argparse
import json
import os
import time

import torch
from accelerate import Accelerator
from accelerate.utils import DeepSpeedPlugin, ParallelismConfig
from accelerate.utils.dataclasses import DeepSpeedSequenceParallelConfig
from transformers import AutoModelForCausalLM, LlamaConfig

ARCH = {
    "8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
    ),
    "1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
    ),
}

p = argparse.ArgumentParser()
p.add_argument("--arch", default="8b")
p.add_argument("--seqlens", default="32768,65536,131072")
p.add_argument("--zero", type=int, default=3)
p.add_argument("--offload", action="store_true")
p.add_argument("--steps", type=int, default=2)
p.add_argument("--liger", action="store_true", help="the guide's recommendation: Liger kernels, fused logits+loss")
a = p.parse_args()

ws = int(os.environ["WORLD_SIZE"])
ds_cfg = {
    "bf16": {"enabled": True},
    "train_micro_batch_size_per_gpu": 1,
    "gradient_accumulation_steps": 1,
    "zero_optimization": {"stage": a.zero, "overlap_comm": True, "contiguous_gradients": True},
    "gradient_clipping": 1.0,
}
if a.offload:
    ds_cfg["zero_optimization"]["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
plugin = DeepSpeedPlugin(hf_ds_config=ds_cfg, zero3_init_flag=(a.zero == 3))
pc = None
if ws > 1:  # one GPU: no SP, the plain HF + DeepSpeed (+ Liger) baseline a 1-GPU user would run
    pc = ParallelismConfig(
        sp_backend="deepspeed",
        sp_size=ws,
        dp_shard_size=1,
        sp_handler=DeepSpeedSequenceParallelConfig(sp_seq_length_is_variable=True, sp_attn_implementation="sdpa"),
    )
acc = Accelerator(parallelism_config=pc, deepspeed_plugin=plugin)
cfg = LlamaConfig(max_position_embeddings=4_194_304, rope_theta=500000.0, **ARCH[a.arch])
t0 = time.time()
if a.liger:
    from liger_kernel.transformers import apply_liger_kernel_to_llama

    apply_liger_kernel_to_llama()
model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16, attn_implementation="sdpa")
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

seqlens = [int(s) for s in a.seqlens.split(",")]
samples = []
for s in seqlens:
    for _ in range(a.steps):
        samples.append(torch.randint(0, cfg.vocab_size, (s,)))


def collate(b):  # as in Accelerate's own ALST test: one sample, position_ids, labels = input_ids
    ids = b[0][None]
    return dict(input_ids=ids, position_ids=torch.arange(ids.shape[1])[None], labels=ids.clone())


dl = torch.utils.data.DataLoader(samples, batch_size=1, collate_fn=collate)
model, opt, dl = acc.prepare(model, opt, dl)
acc.print(f"setup {time.time() - t0:.1f}s", flush=True)
sp_group = (
    acc.torch_device_mesh["sp"].get_group() if ws > 1 and getattr(acc, "torch_device_mesh", None) is not None else None
)
if sp_group is None and ws > 1:
    from deepspeed.utils import groups

    sp_group = groups._get_sequence_parallel_group()
unwrapped = acc.unwrap_model(model)

rows = {}
it = iter(dl)
step = 0
while True:
    try:
        batch = next(it)
    except StopIteration:
        break
    seqlen = batch["input_ids"].shape[1] * ws
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t = time.time()
    try:
        batch = {k: v.to(acc.device) for k, v in batch.items()}
        if "shift_labels" not in batch:  # no SP adapter on one GPU: shift the labels as HF's loss does
            batch["shift_labels"] = torch.nn.functional.pad(batch["labels"], (0, 1), value=-100)[:, 1:].contiguous()
        sl = batch["shift_labels"]
        if a.liger:  # Liger computes the loss from shift_labels without materialising the logits
            loss = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], shift_labels=sl).loss
        else:
            out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"])
            loss = unwrapped.loss_function(logits=out.logits, labels=None, shift_labels=sl, vocab_size=cfg.vocab_size)
        if ws > 1:
            losses = torch.distributed.nn.functional.all_gather(loss, group=sp_group)
            good = (sl != -100).view(-1).sum()
            goods = torch.distributed.nn.functional.all_gather(good, group=sp_group)
            loss = sum(losses[r] * goods[r] for r in range(ws) if goods[r] > 0) / max(sum(goods), 1)
        acc.backward(loss)
        opt.step()
        opt.zero_grad()
        torch.cuda.synchronize()
    except torch.OutOfMemoryError:
        acc.print(json.dumps({"seqlen": seqlen, "oom": True}), flush=True)
        break
    dt = time.time() - t
    peak = torch.cuda.max_memory_allocated() / 2**30
    rows.setdefault(seqlen, []).append((dt, peak, float(loss)))
    acc.print(
        json.dumps(
            {
                "step": step,
                "seqlen": seqlen,
                "sec": round(dt, 3),
                "peak_gib": round(peak, 2),
                "loss": round(float(loss), 4),
            }
        ),
        flush=True,
    )
    step += 1
for s, r in rows.items():
    best = min(x[0] for x in r)
    acc.print(
        json.dumps(
            {
                "summary": True,
                "arch": a.arch,
                "zero": a.zero,
                "offload": a.offload,
                "liger": a.liger,
                "gpus": ws,
                "seqlen": s,
                "best_sec": round(best, 3),
                "tok_per_s": round(s / best),
                "peak_gib": round(max(x[1] for x in r), 2),
            }
        ),
        flush=True,
    )
