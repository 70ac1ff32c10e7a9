"""The user's recipes run as written on a fresh model and corpus: `finetune_lora` fine-tunes a pretrained local model
(a tiny Llama saved with its tokenizer and a chat template) on chat rows with LoRA, under SP, and leaves a peft adapter
that loads onto the base model."""

import json
import os

import pytest
import torch

from helpers import REPO, assert_ok, run_job, save_tiny_model

pytestmark = pytest.mark.slow

TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def test_finetune_lora_recipe_trains_and_exports_a_peft_adapter(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, ByT5Tokenizer

    model_dir = save_tiny_model(str(tmp_path / "base"), "llama")  # vocab 384 = len(ByT5Tokenizer())
    tok = ByT5Tokenizer()
    tok.chat_template = TEMPLATE
    tok.save_pretrained(model_dir)
    chat = tmp_path / "chat.jsonl"
    with open(chat, "w") as f:
        for i in range(24):
            f.write(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": f"what is {i} + {i}?"},
                            {"role": "assistant", "content": f"{i} + {i} = {2 * i}."},
                        ]
                    }
                )
                + "\n"
            )
    header = open(os.path.join(REPO, "conf", "experiment", "finetune_lora.yaml")).read()
    assert "model.name_or_path=/path/to/model data.path=/path/to/chat.jsonl" in header
    run = assert_ok(
        run_job(
            [
                "+experiment=finetune_lora",
                f"model.name_or_path={model_dir}",
                f"data.path={chat}",
                "data.seq_length=128",
                f"data.cache_dir={tmp_path / 'cache'}",
                "train.max_steps=2",
                "checkpoint.every=0",
                "optim.warmup_steps=0",
                "parallelism.sp_size=2",
                "parallelism.dp_shard_size=1",
                "train.device=cpu",
            ],
            str(tmp_path / "job"),
            experiment=None,
        ),
        steps=2,
    )
    out = os.path.join(run.run_dir, "model")
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"} <= set(os.listdir(out))
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), out)
    ids = AutoTokenizer.from_pretrained(out)("<user>what is 3 + 3?\n<assistant>", return_tensors="pt")["input_ids"]
    assert torch.isfinite(model(input_ids=ids).logits).all()
    assert json.load(open(os.path.join(out, "adapter_config.json")))["r"] == 16
