"""data's cross-field rules, checked before any worker starts (framework.validate calls them in order)."""

from framework.data.config import reads_corpus, token_ids_only
from framework.data.loader import held_out_data
from framework.errors import ConfigError
from framework.parallelism.config import row_pieces


def check(d, *, parallelism, eval_every: int, vocab_size: int = 0):
    """Lengths against the SP layout, what data=hf and evaluation need, and long_range's filler against the model's
    vocabulary (`vocab_size`; 0: not checked)."""
    p = parallelism
    if vocab_size:
        check_filler(d, vocab_size=vocab_size)
    short = list(d.short_lengths)
    if len(short) != 2 or not 1 <= short[0] <= short[1]:
        raise ConfigError(
            "data.short_lengths",
            short,
            "must be [lo, hi] with 1 <= lo <= hi (long_range's short documents, log-uniform in that range)",
            "e.g. data.short_lengths=[32,64] (the default)",
        )
    if d.seq_length < 1:
        raise ConfigError("data.seq_length", d.seq_length, "must be positive", "set data.seq_length=4096")
    if not reads_corpus(d) and d.num_samples < 1:
        raise ConfigError(
            "data.num_samples", d.num_samples, "synthetic data needs at least one row", "set data.num_samples=1024"
        )
    lengths = list(d.lengths) or [d.seq_length]
    if not reads_corpus(d) and min(lengths) < 2:
        raise ConfigError(
            "data.lengths",
            list(d.lengths),
            f"a row of {min(lengths)} tokens has no token to predict",
            "give lengths of at least 2 tokens, e.g. data.lengths=[256]",
        )
    if not p.sp_seq_length_is_variable:
        fixed = p.sp_seq_length or d.seq_length
        pieces = row_pieces(p.sp_size, p.cp_size)
        what = f"2 x cp_size x sp_size = {pieces}" if p.cp_size > 1 else f"sp_size={p.sp_size}"
        if fixed % pieces:
            raise ConfigError(
                "parallelism.sp_seq_length" if p.sp_seq_length else "data.seq_length",
                fixed,
                f"must be divisible by {what} when sp_seq_length_is_variable=false",
                f"use a multiple of {pieces}, e.g. {fixed - fixed % pieces or pieces}",
            )
        if not reads_corpus(d) and any(x != fixed for x in lengths):
            raise ConfigError(
                "data.lengths",
                lengths,
                f"rows must all be {fixed} tokens when sp_seq_length_is_variable=false",
                "set parallelism.sp_seq_length_is_variable=true",
            )
    # rows of a set length (packed, padded to seq_length, synthetic) are cut into sp_size shards as they are
    fixed_rows = lengths if not reads_corpus(d) else [d.seq_length] if d.packing or d.pad_to_seq_length else []
    odd = [x for x in fixed_rows if x % p.sp_size]
    if odd:
        key = "data.lengths" if not reads_corpus(d) and list(d.lengths) else "data.seq_length"
        raise ConfigError(
            key,
            odd[0],
            f"rows of {odd[0]} tokens do not split into sp_size={p.sp_size} sequence shards",
            f"use a multiple of {p.sp_size}, e.g. {odd[0] - odd[0] % p.sp_size or p.sp_size}",
        )
    if eval_every > 0 and reads_corpus(d) and not d.eval_path:
        raise ConfigError(
            "data.eval_path",
            d.eval_path,
            "eval.every > 0 needs held-out rows for data=hf",
            "set data.eval_path=/path/to/heldout.jsonl, or eval.every=0",
        )
    if reads_corpus(d) and not d.path:
        raise ConfigError(
            "data.path",
            d.path,
            "data=hf needs a file, glob, directory or hub id",
            "set data.path=/path/to/corpus.jsonl",
        )


def check_corpus(d, *, parallelism, tokenizer_path, world: int, micro_batch_size: int, seed: int, eval_every: int):
    """Rules that need the data itself. data=hf: loads and tokenizes the corpus once (filling the tokenization cache
    the workers then read), so a missing path, a broken row, an empty corpus, a missing field or tokenizer, or
    documents all too long stop the job here with one ConfigError. Returns the training rows (None: not data=hf, or
    streamed)."""
    if not reads_corpus(d) and d.num_samples < world * micro_batch_size:
        raise ConfigError(
            "data.num_samples",
            d.num_samples,
            f"cannot feed one step: every one of the {world} "
            f"processes reads its own rows of train.micro_batch_size={micro_batch_size} (the ranks "
            "sharing a sequence take turns)",
            f"set data.num_samples={world * micro_batch_size} or more",
        )
    if not reads_corpus(d):
        return
    from framework.data.hf import build_hf_dataset

    tok = dict(
        tokenizer_path=d.tokenizer or tokenizer_path,
        seed=seed,
        tokenizer_key="data.tokenizer" if d.tokenizer else "model.name_or_path",
    )
    if eval_every and d.eval_path:  # the held-out rows, tokenized (and cached) here too
        build_hf_dataset(held_out_data(d), **tok)
    dataset = build_hf_dataset(d, **tok)
    if d.streaming:
        next(iter(dataset.rows(0)), None)
        return None
    p = parallelism
    need = world * micro_batch_size  # one micro-step of every DP replica for each SP rank
    if len(dataset) < need:
        raise ConfigError(
            "data.path",
            d.path,
            f"gives {len(dataset)} rows of data.seq_length={d.seq_length}, fewer "
            f"than one step needs ({need}: processes x micro_batch_size)",
            "add data, lower data.seq_length or train.micro_batch_size",
        )
    if not d.packing and not d.pad_to_seq_length and p.sp_size * p.cp_size > 1 and not p.sp_seq_length_is_variable:
        raise ConfigError(
            "data.pad_to_seq_length",
            False,
            "unpacked rows vary in length, and "
            "parallelism.sp_seq_length_is_variable=false needs them all of one length",
            "set data.pad_to_seq_length=true, data.packing=true or parallelism.sp_seq_length_is_variable=true",
        )
    return dataset  # the start lines describe it (framework.data.stats)


def check_filler(d, *, vocab_size: int):
    """data.filler_vocab: long_range's filler ids (and the token-id passkey cases'), 0 (auto) or 2 or more, and with
    the ids the passkeys reserve inside the model's vocabulary."""
    from framework.data.long_range import RESERVED, filler_size

    asked, room = d.filler_vocab, vocab_size - RESERVED
    if asked < 0 or asked == 1:
        raise ConfigError(
            "data.filler_vocab",
            asked,
            "random filler needs 2 ids or more (0: min(256, the vocabulary less the passkeys' ids))",
            "set data.filler_vocab=0",
        )
    if (asked or token_ids_only(d)) and not 2 <= filler_size(vocab_size, asked) <= room:
        raise ConfigError(
            "data.filler_vocab",
            asked,
            f"a vocabulary of {vocab_size} ids has room for {max(room, 0)} filler ids beside the {RESERVED} the "
            "passkeys reserve (10 digits, 8 needle marks, QUERY), and filler needs 2",
            f"set data.filler_vocab={room} or less" if room >= 2 else f"use a model with {RESERVED + 2} ids or more",
        )
