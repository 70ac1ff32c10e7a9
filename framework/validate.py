"""The validation step: every group's cross-field rules, called in order in the launching process before any worker
starts, with the resolve step (framework.resolve: every `auto` replaced by its value) before the plan's rules. The rules
live next to the code they protect (framework/<group>/rules.py); this module only orders them and resolves the model's
config once, for the rules and for what runs after them.

Each rule raises ConfigError(key, value, rule, fix); the CLI prints that one message (no traceback) and stops.
"""

from dataclasses import dataclass
from typing import Any, Optional

from framework.attention import rules as attention_rules
from framework.checkpoint import rules as checkpoint_rules
from framework.checkpoint import run_settings
from framework.data import rules as data_rules
from framework.data.config import token_ids_only
from framework.engine import rules as engine_rules
from framework.eval import rules as eval_rules
from framework.errors import ConfigError
from framework.model import rules as model_rules
from framework.optim import rules as optim_rules
from framework.parallelism import rules as parallelism_rules
from framework.parallelism.config import row_pieces
from framework.plan import rules as plan_rules
from framework.train import rules as train_rules
from framework.resolve import resolve, unresolved
from framework.runtime import device_type, world_size


@dataclass
class Validated:
    """What validation found out: the processes the job runs on, and the model's transformers config."""

    world: int
    model_config: Any
    plan: Any = None
    """framework.plan.planner.Plan of the job (None on CPU processes with nothing offloaded)."""
    resume_dir: Optional[str] = None
    """The checkpoint folder the run resumes from, as validation found it complete (None: a fresh run); the workers
    load this one, not checkpoint.resume resolved again."""
    resume_step: int = 0
    """The step of the checkpoint checkpoint.resume names (0: a fresh run)."""
    resume_skipped: tuple = ()
    """'step_N: why' for each newer checkpoint checkpoint.resume=latest skipped."""
    resolved: dict = None
    """What the resolve step (framework.resolve) put in place of each `auto`: {key: value}."""
    corpus: Any = None
    """data=hf: the training rows, tokenized (None otherwise): the start lines describe them."""
    notes: tuple = ()
    """What a rule adjusted and says at start (a rule only checks and returns them; the CLI prints them)."""

    @property
    def text_config(self):
        return self.model_config.get_text_config()


def validate(cfg, run_dir: Optional[str] = None) -> Validated:
    """Check every rule, in order; the first one broken raises ConfigError. With `run_dir`, also the run directory
    against checkpoint.resume and the checkpoint it names."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from framework.config import REQUIRED, check_known_keys

    try:
        OmegaConf.to_container(cfg, resolve=True)  # ${required:}, bad interpolations or env values of the wrong type
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "?")
        if REQUIRED in str(exc):
            raise ConfigError(key, None, REQUIRED, f"add {key}=... to the command") from None
        raise ConfigError(
            key,
            getattr(exc, "value", None),
            " ".join(str(exc).split("\n")[0].split()),
            "fix the value (or the PARALLELISM_CONFIG_* environment variable it comes from)",
        ) from None
    check_known_keys(cfg)
    p, m, a, d, e = cfg.parallelism, cfg.model, cfg.attention, cfg.data, cfg.engine
    t, c = cfg.train, cfg.checkpoint
    planning = bool(cfg.get("plan", False))
    device = "cuda" if planning else t.device  # plan=true predicts for GPUs from any machine; it starts nothing
    world = world_size(p, device)
    parallelism_rules.check(p, world=world, device=device, count_gpus=not planning)
    config = model_rules.model_config(m, device=device)
    text = config.get_text_config()
    parallelism_rules.check_heads(p, text_config=text)
    attention_rules.check(a, sp_size=p.sp_size, device=device)
    plan_rules.check_switches(m)
    model_rules.check_features(
        m, config=config, device=device, attention=str(a.implementation), environment=not planning
    )
    model_rules.check_lora(m.lora, config=config, super_offload=e.super_offload)
    data_rules.check(d, parallelism=p, eval_every=cfg.eval.every or int(cfg.eval.only), vocab_size=text.vocab_size)
    attention_rules.check_packed(
        a, text_config=text, device=device, packing=d.packing, micro_batch_size=t.micro_batch_size
    )
    attention_rules.check_ring(a, parallelism=p, text_config=text, packing=d.packing, model=m)
    corpus = data_rules.check_corpus(
        d,
        parallelism=p,
        tokenizer_path=m.name_or_path,
        world=world,
        micro_batch_size=t.micro_batch_size,
        seed=t.seed,
        eval_every=cfg.eval.every or int(cfg.eval.only),
    )
    engine_rules.check(e, grad_clip=cfg.optim.grad_clip, device=device)
    train_rules.check(t, device=device)
    checkpoint_rules.check(c)
    notes = eval_rules.check(
        cfg.eval,
        seq_length=max(list(d.lengths) or [d.seq_length]),
        pieces=row_pieces(p.sp_size, p.cp_size),
        name_or_path=m.name_or_path,
        resume=c.resume,
        vocab_size=text.vocab_size,
        tokenizer_path=None if token_ids_only(d) else d.tokenizer or m.name_or_path,
    )
    optim_rules.check(cfg.optim)
    resume_dir, resume_step, skipped = None, 0, []
    if run_dir is not None and not planning:
        settings = run_settings(
            parallelism=p, data=d, train=t, optim=cfg.optim, tokenizer=d.tokenizer or m.name_or_path, world=world
        )
        resume_dir, resume_step, skipped = checkpoint_rules.check_resume(c, run_dir=run_dir, settings=settings)
    left_auto = unresolved(cfg)
    resolved = resolve(cfg, text_config=text, world=world, on_gpu=device_type(device) == "cuda" or planning)
    plan = plan_rules.check(
        cfg,
        unresolved=left_auto,
        text_config=text,
        world=world,
        on_gpu=device_type(device) == "cuda",
        planning=planning,
    )
    return Validated(
        world=world,
        model_config=config,
        plan=plan,
        resume_dir=resume_dir,
        resume_step=resume_step,
        resume_skipped=tuple(skipped),
        resolved=resolved,
        corpus=corpus,
        notes=tuple(notes or ()),
    )
