"""eval's rules, checked before any worker starts."""

from framework.errors import ConfigError


def check(
    ev,
    *,
    seq_length: int = 0,
    pieces: int = 1,
    name_or_path=None,
    resume=None,
    tokenizer_path=None,
    vocab_size: int = 0,
):
    """`seq_length`: the longest training row; `pieces`: the shards of a row (sp, or 2 x cp x sp). Returns the notes
    the start lines show (passkey lengths rounded to the shards)."""
    if ev.steps < 1:
        raise ConfigError("eval.steps", ev.steps, "must be at least 1", "set eval.steps=1")
    if ev.every < 0:
        raise ConfigError("eval.every", ev.every, "must be 0 or more (0: never)", "set eval.every=0")
    if ev.only and resume:
        raise ConfigError(
            "checkpoint.resume",
            resume,
            "eval.only=true loads no checkpoint",
            "evaluate the run's export: model.name_or_path=<run dir>/model, checkpoint.resume=null",
        )
    if ev.only and not name_or_path:
        raise ConfigError(
            "model.name_or_path",
            name_or_path,
            "eval.only=true evaluates a trained model and there is none",
            "set model.name_or_path=<a model directory, a run's model/ export or a LoRA adapter>",
        )
    if seq_length:
        check_buckets(ev.position_buckets, seq_length)
    if ev.passkey:
        return check_passkey(
            ev, seq_length=seq_length, pieces=pieces, tokenizer_path=tokenizer_path, vocab_size=vocab_size
        )


def check_buckets(spec, seq_length: int):
    if spec is None or str(spec) == "auto":
        return
    try:
        edges = [int(x) for x in spec]
    except (TypeError, ValueError):
        raise ConfigError(
            "eval.position_buckets",
            spec,
            "must be `auto` or a list of integer edges",
            f"set eval.position_buckets=auto or e.g. [0,1024,{seq_length}]",
        ) from None
    if len(edges) < 2 or edges[0] < 0 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ConfigError(
            "eval.position_buckets",
            edges,
            "needs at least two increasing edges from 0 or more",
            f"e.g. eval.position_buckets=[0,1024,{seq_length}]",
        )
    if edges[-1] > seq_length:
        raise ConfigError(
            "eval.position_buckets",
            edges,
            f"edge {edges[-1]} lies past data.seq_length={seq_length}: no position reaches it",
            f"end the edges at {seq_length} or below",
        )


def check_passkey(ev, *, seq_length: int, pieces: int, tokenizer_path, vocab_size: int):
    from framework.eval import passkey as pk

    depths = list(ev.passkey_depths)
    bad = [d for d in depths if not 0.0 <= float(d) <= 1.0]
    if not depths or bad:
        raise ConfigError(
            "eval.passkey_depths",
            depths,
            "depths are fractions of the context, from 0 (start) to 1 (just before the question)",
            "e.g. eval.passkey_depths=[0.1,0.5,0.9]",
        )
    if ev.passkey_samples < 1:
        raise ConfigError(
            "eval.passkey_samples",
            ev.passkey_samples,
            "must be at least 1 (keys per cell)",
            "set eval.passkey_samples=1",
        )
    try:
        lengths = pk.lengths(ev.passkey_lengths, seq_length, pieces)
    except (TypeError, ValueError):
        raise ConfigError(
            "eval.passkey_lengths",
            ev.passkey_lengths,
            "must be `auto` or a list of token counts",
            f"e.g. eval.passkey_lengths=[{seq_length // 2},{seq_length}]",
        ) from None
    too_long = [n for n, _ in lengths if n > seq_length]
    if too_long:
        raise ConfigError(
            "eval.passkey_lengths",
            too_long[0],
            f"longer than data.seq_length={seq_length}, the length the run is sized for",
            "evaluate longer contexts with eval.only=true and a larger data.seq_length",
        )
    rounded = [(n, u) for n, u in lengths if n != u]
    notes = []
    if rounded:
        notes.append(
            f"note: eval.passkey_lengths rounded down to a multiple of the row's {pieces} shards: "
            + ", ".join(f"{n} -> {u}" for n, u in rounded)
        )
    if vocab_size:
        import torch

        lay = pk.layout(tokenizer_path, vocab_size)
        shortest = min(u for _, u in lengths)
        try:
            lay.context(shortest, 0.0, torch.Generator().manual_seed(0))
        except ValueError as exc:
            raise ConfigError("eval.passkey_lengths", shortest, str(exc), "use longer passkey lengths") from None
    return notes
