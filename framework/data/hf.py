"""data=hf: a corpus through HF `datasets` → tokenized documents (cached) → training rows (packed or one per row).

Sources: a local file, a glob, a directory of shards (json/jsonl, parquet, csv, text, arrow), a directory written
by `Dataset.save_to_disk`, or a hub id. Rows: raw text (`data.text_field`), chat (`messages`, through the chat
template, prompt tokens labelled -100), or already tokenized (`input_ids`, optional `labels`, used as they are).

Tokenization runs once through `datasets.map` (`data.num_proc` processes) into an Arrow cache file whose name is a
hash of the source's fingerprint, the tokenizer and the options; the launching process fills it during validation
and every worker then reads it (a second run does not tokenize again). A failed map leaves no file behind.

Packing concatenates the documents in order into rows of `data.seq_length`: position_ids restart at 0 at every
document start (a document cut by a row boundary goes on in the next row, restarting at 0 there), and the first
token of every document is labelled -100 so the previous document's last token never learns to predict it.
Rows are cut from the token stream when read (a cumulative-length index, no second copy of the corpus).
"""

import csv
import glob
import hashlib
import json
import os
import warnings
from typing import Optional

import numpy as np
import torch

from framework.data.rows import IGNORE
from framework.errors import ConfigError

FORMATS = {
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
    ".txt": "text",
    ".text": "text",
    ".arrow": "arrow",
}
CACHE_VERSION = 1
"""Bump when the tokenized layout changes, so old cache files are not reused."""
DEFAULT_CACHE = os.path.join("~", ".cache", "framework", "tokenized")


class BadRow(Exception):
    """A row the tokenizer cannot take (raised inside datasets.map, turned into a ConfigError)."""

    def __init__(self, index: int, why: str):
        self.index, self.why = index, why
        super().__init__(f"row {index}: {why}")


# ------------------------------------------------------------------------------------------------------ loading
def _is_local(path: str) -> bool:
    return (
        path.startswith((".", "/", "~"))
        or os.path.exists(path)
        or any(c in path for c in "*?[")
        or os.path.splitext(path)[1] in FORMATS
        or path.count("/") > 1
    )


def why_missing(path: str) -> str:
    """Why a local path names no file: a loop of symbolic links, a link to nothing, no permission, or nothing."""
    import errno

    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a loop of symbolic links (following them never reaches a file)"
        if exc.errno == errno.EACCES:
            return "cannot be reached: permission denied"
        if os.path.islink(path):
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
    return "no such file or directory"


def resolve_files(path: str):
    """(builder, files) for a local path: builder is a datasets packaged builder, or "disk" for save_to_disk."""
    full = os.path.expanduser(path)
    if any(c in path for c in "*?["):
        files = sorted(f for f in glob.glob(full, recursive=True) if os.path.isfile(f))
        if not files:
            raise ConfigError(
                "data.path", path, "the glob matches no file", "check the pattern (** needs a / around it)"
            )
    elif os.path.isdir(full):
        if os.path.exists(os.path.join(full, "state.json")) or os.path.exists(os.path.join(full, "dataset_dict.json")):
            return "disk", [full]
        files = sorted(
            f
            for f in glob.glob(os.path.join(full, "**", "*"), recursive=True)
            if os.path.isfile(f) and os.path.splitext(f)[1] in FORMATS
        )
        if not files:
            raise ConfigError(
                "data.path",
                path,
                f"the directory holds no {'/'.join(sorted(FORMATS))} file",
                "point data.path at the corpus files",
            )
    elif os.path.isfile(full):
        files = [full]
    else:
        raise ConfigError(
            "data.path", path, why_missing(full), "give an existing file, glob, directory or a hub id (owner/name)"
        )
    empty = [f for f in files if os.path.getsize(f) == 0]
    if empty:
        raise ConfigError("data.path", path, f"{empty[0]} is empty (0 bytes)", "give a corpus file that holds rows")
    kinds = {FORMATS.get(os.path.splitext(f)[1]) for f in files}
    if None in kinds:
        odd = next(f for f in files if os.path.splitext(f)[1] not in FORMATS)
        raise ConfigError(
            "data.path",
            path,
            f"{odd}: unknown format (known: {', '.join(sorted(FORMATS))})",
            "rename the file with its format's extension",
        )
    if len(kinds) > 1:
        raise ConfigError("data.path", path, f"mixes formats {sorted(kinds)}", "give files of one format")
    return kinds.pop(), files


def _first_bad_line(builder: str, files):
    """(file, line, why) of the first row that cannot be read, or None if every file reads."""
    for f in files:
        try:
            with open(f, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            return f, 0, f"cannot open ({exc.strerror})"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f, raw[: exc.start].count(b"\n") + 1, "not UTF-8 text"
        if builder == "json":
            stripped = text.lstrip()
            if stripped.startswith("[") or (stripped.startswith("{") and f.endswith(".json")):
                try:
                    json.loads(text)
                    continue
                except json.JSONDecodeError as exc:
                    if stripped.startswith("["):
                        return f, exc.lineno, exc.msg
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        return f, n, f"not valid JSON ({exc.msg})"
                    if not isinstance(row, dict):
                        return f, n, "a JSON line must be an object"
        elif builder == "csv":
            rows = csv.reader(text.splitlines())
            header = next(rows, None)
            for n, row in enumerate(rows, 2):
                if header is not None and len(row) != len(header):
                    return f, n, f"{len(row)} fields where the header has {len(header)}"
        elif builder in ("parquet", "arrow"):
            try:
                import pyarrow.ipc as ipc
                import pyarrow.parquet as pq

                pq.read_metadata(f) if builder == "parquet" else ipc.open_stream(f).read_all()
            except Exception as exc:  # noqa: BLE001  (any pyarrow failure names the file)
                try:
                    if builder == "arrow":
                        ipc.open_file(f).read_all()
                        continue
                except Exception:  # noqa: BLE001
                    pass
                return f, 0, f"unreadable {builder} file ({' '.join(str(exc).split())[:160]})"
    return None


def load_raw(cfg):
    """The raw rows as a datasets Dataset (or IterableDataset when cfg.streaming). Errors are ConfigErrors."""
    import datasets

    datasets.disable_progress_bars()
    path = cfg.path
    cache_dir = os.path.expanduser(cfg.cache_dir) if cfg.cache_dir else None
    if _is_local(path):
        builder, files = resolve_files(path)
        try:
            if builder == "disk":
                ds = datasets.load_from_disk(files[0])
                if isinstance(ds, datasets.DatasetDict):
                    ds = ds[cfg.split]
                return ds.to_iterable_dataset() if cfg.streaming else ds
            return datasets.load_dataset(
                builder, data_files=files, split="train", cache_dir=cache_dir, streaming=cfg.streaming
            )
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001  (datasets/pyarrow raise many kinds; find the row ourselves)
            bad = _first_bad_line(builder, files if builder != "disk" else [])
            if bad is None:
                raise ConfigError(
                    "data.path",
                    path,
                    f"cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
                    "check the files",
                ) from None
            f, line, why = bad
            where = f"{f}, line {line}" if line else f
            raise ConfigError("data.path", path, f"broken row in {where}: {why}", "fix or remove that row") from None
    try:
        return datasets.load_dataset(path, split=cfg.split, cache_dir=cache_dir, streaming=cfg.streaming)
    except Exception as exc:  # noqa: BLE001  (offline, unknown id, no such split)
        raise ConfigError(
            "data.path",
            path,
            "is neither a local file/directory nor a hub dataset that could be "
            f"loaded ({' '.join(str(exc).split())[:200]})",
            "give a local path, or check the hub id, data.split and the network",
        ) from None


# -------------------------------------------------------------------------------------------------- tokenizing
def load_tokenizer(tokenizer_path: Optional[str], *, key: str):
    if not tokenizer_path:
        raise ConfigError(
            key,
            tokenizer_path,
            "text and chat rows need a tokenizer, and there is no model directory to take it from",
            "set data.tokenizer=<tokenizer directory or hub id>",
        )
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(os.path.expanduser(tokenizer_path))
    except Exception as exc:  # noqa: BLE001  (missing files, unknown id, offline)
        why = " ".join(str(exc).split())[:200]
        raise ConfigError(
            key,
            tokenizer_path,
            f"no tokenizer can be loaded from it ({why})",
            "give a directory with tokenizer files or a hub id, e.g. data.tokenizer=/path/to/model",
        )


def row_kind(columns, text_field: str) -> str:
    if "input_ids" in columns:
        return "tokens"
    if text_field in columns:
        return "text"
    if "messages" in columns:
        return "chat"
    raise ConfigError(
        "data.text_field",
        text_field,
        f"no such field in the rows; they hold {sorted(columns)}",
        "set data.text_field to the field with the text, or give rows with input_ids or messages",
    )


def encode_chat(tok, messages, template: Optional[str]):
    """(input_ids, labels) of one conversation: every token the assistant does not say is labelled -100.

    Renders the conversation prefix by prefix (before each assistant turn with the generation prompt, then through
    it) and tokenizes the pieces in order, so the masked span is exactly the prompt whatever the template.
    """

    def render(msgs, gen):
        return tok.apply_chat_template(msgs, chat_template=template, tokenize=False, add_generation_prompt=gen)

    ids, labels, done = [], [], ""

    def add(text, train):
        piece = tok(text, add_special_tokens=False)["input_ids"] if text else []
        ids.extend(piece)
        labels.extend(piece if train else [IGNORE] * len(piece))

    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        prompt, full = render(messages[:i], True), render(messages[: i + 1], False)
        if not (prompt.startswith(done) and full.startswith(prompt)):
            raise ValueError(
                "the chat template does not render the conversation prefix by prefix, so the prompt cannot be masked"
            )
        add(prompt[len(done) :], False)
        add(full[len(prompt) :], True)
        done = full
    whole = render(messages, False)
    add(whole[len(done) :] if whole.startswith(done) else "", False)
    return ids, labels


class Tokenize:
    """The datasets.map function (batched, with indices): → input_ids, [labels], length."""

    def __init__(self, tok, *, kind: str, text_field: str, add_eos: bool, chat_template: Optional[str]):
        self.tok, self.kind, self.field, self.add_eos, self.template = tok, kind, text_field, add_eos, chat_template

    def __call__(self, batch, indices):
        if self.kind == "tokens":
            ids = batch["input_ids"]
            for i, x in zip(indices, ids):
                if not isinstance(x, (list, tuple, np.ndarray)) or any(not isinstance(t, (int, np.integer)) for t in x):
                    raise BadRow(i, "input_ids must be a list of integers")
            out = {"length": [len(x) for x in ids]}
            if "labels" in batch:
                for i, x, y in zip(indices, ids, batch["labels"]):
                    if len(x) != len(y):
                        raise BadRow(i, f"labels has {len(y)} entries and input_ids {len(x)}")
            return out
        if self.kind == "text":
            texts = batch[self.field]
            for i, t in zip(indices, texts):
                if not isinstance(t, str):
                    raise BadRow(i, f"{self.field} is {type(t).__name__}, not text")
            ids = self.tok(texts, add_special_tokens=True)["input_ids"]
            eos = self.tok.eos_token_id
            if self.add_eos and eos is not None:
                ids = [x if x and x[-1] == eos else x + [eos] for x in ids]
            return {"input_ids": ids, "length": [len(x) for x in ids]}
        ids, labels = [], []
        for i, msgs in zip(indices, batch["messages"]):
            if not isinstance(msgs, list) or any(not isinstance(m, dict) or "role" not in m for m in msgs):
                raise BadRow(i, "messages must be a list of {role, content}")
            try:
                x, y = encode_chat(self.tok, msgs, self.template)
            except BadRow:
                raise
            except Exception as exc:  # noqa: BLE001  (jinja errors)
                raise BadRow(i, f"chat template failed ({' '.join(str(exc).split())[:160]})") from None
            ids.append(x)
            labels.append(y)
        return {"input_ids": ids, "labels": labels, "length": [len(x) for x in ids]}


def tokenizer_signature(tok) -> str:
    """What decides the token ids: class, vocabulary, special tokens, chat template."""
    h = hashlib.sha256()
    h.update(type(tok).__name__.encode())
    h.update(json.dumps(sorted(tok.get_vocab().items()), ensure_ascii=False).encode())
    h.update(
        json.dumps([tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.chat_template], default=str).encode()
    )
    return h.hexdigest()


def _source_name(cfg) -> str:
    return cfg.path if not _is_local(cfg.path) else os.path.abspath(os.path.expanduser(cfg.path))


def tokenize(raw, cfg, *, tokenizer_path: Optional[str], tokenizer=None, key: str = "data.tokenizer"):
    """Map raw rows to documents (input_ids, [labels], length), through the cache. Returns (docs, kind)."""
    columns = raw.column_names if raw.column_names is not None else list(next(iter(raw)).keys())
    kind = row_kind(columns, cfg.text_field)
    tok = None
    if kind != "tokens":
        tok = tokenizer if tokenizer is not None else load_tokenizer(tokenizer_path, key=key)
        if kind == "chat" and not (cfg.chat_template or tok.chat_template):
            raise ConfigError(
                "data.chat_template",
                cfg.chat_template,
                "chat rows (messages) need a chat template and the tokenizer has none",
                "set data.chat_template to a Jinja template, or use a tokenizer that has one",
            )
    fn = Tokenize(tok, kind=kind, text_field=cfg.text_field, add_eos=cfg.add_eos, chat_template=cfg.chat_template)
    keep = ["input_ids", "labels"] if kind == "tokens" else []
    drop = [c for c in columns if c not in keep]
    if cfg.streaming:
        return raw.map(fn, batched=True, with_indices=True, remove_columns=drop), kind
    fingerprint = hashlib.sha256(
        json.dumps(
            {
                "source": raw._fingerprint,
                "kind": kind,
                "text_field": cfg.text_field,
                "add_eos": cfg.add_eos,
                "chat_template": cfg.chat_template,
                "tokenizer": tokenizer_signature(tok) if tok is not None else None,
                "version": CACHE_VERSION,
            }
        ).encode()
    ).hexdigest()[:32]
    cache_dir = os.path.expanduser(cfg.cache_dir or DEFAULT_CACHE)
    os.makedirs(cache_dir, exist_ok=True)
    before = set(os.listdir(cache_dir))
    try:
        return raw.map(
            fn,
            batched=True,
            with_indices=True,
            remove_columns=drop,
            num_proc=cfg.num_proc if cfg.num_proc > 1 else None,
            new_fingerprint=fingerprint,
            load_from_cache_file=True,
            cache_file_name=os.path.join(cache_dir, f"tokenized-{fingerprint}.arrow"),
            desc="tokenizing",
        ), kind
    except BaseException as exc:
        for name in set(os.listdir(cache_dir)) - before:  # no half-written cache file survives a failed map
            if fingerprint not in name:
                continue  # another job's, written meanwhile to the shared cache
            try:
                os.remove(os.path.join(cache_dir, name))
            except OSError:
                pass
        bad = exc if isinstance(exc, BadRow) else getattr(exc, "__cause__", None) or getattr(exc, "__context__", None)
        if isinstance(bad, BadRow):
            raise ConfigError(
                "data.path",
                cfg.path,
                f"broken row {bad.index}{_line_of(cfg.path, bad.index)}: {bad.why}",
                "fix or remove that row",
            ) from None
        if isinstance(exc, UnicodeDecodeError) or isinstance(bad, UnicodeDecodeError):  # Arrow read the bytes as
            where = ""  # they are; decoding them for the tokenizer fails
            builder, files = resolve_files(cfg.path) if _is_local(cfg.path) else ("", [])
            found = _first_bad_line(builder, files) if builder != "disk" else None
            if found:
                where = f" ({found[0]}, line {found[1]})"
            raise ConfigError(
                "data.path",
                cfg.path,
                f"holds bytes that are not UTF-8 text{where}",
                "re-encode it as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
            ) from None
        raise


def _line_of(path: str, index: int) -> str:
    """' (file, line N)' for a row of a single local JSON-lines/text file, else ''."""
    full = os.path.expanduser(path)
    if os.path.isfile(full) and os.path.splitext(full)[1] in (".jsonl", ".txt", ".text"):
        with open(full, encoding="utf-8", errors="replace") as f:
            n = 0
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    if n == index:
                        return f" ({full}, line {lineno})"
                    n += 1
    return ""


# ------------------------------------------------------------------------------------------------------- rows
def _flat(table, column: str) -> np.ndarray:
    return table.column(column).combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(np.int64)


class DocumentRows(torch.utils.data.Dataset):
    """One document per row, cut to seq_length when data.truncation (longer ones were left out otherwise)."""

    def __init__(self, docs, *, index: np.ndarray, seq_length: int):
        self.docs, self.index, self.L = docs.with_format("arrow"), index, seq_length
        self.has_labels = "labels" in docs.column_names

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        d = int(self.index[i])
        table = self.docs[d : d + 1]
        ids = torch.from_numpy(_flat(table, "input_ids")[: self.L])
        labels = torch.from_numpy(_flat(table, "labels")[: self.L]) if self.has_labels else ids.clone()
        return {"input_ids": ids, "labels": labels, "position_ids": torch.arange(len(ids))}


class PackedRows(torch.utils.data.Dataset):
    """Documents concatenated in order and cut into rows of seq_length (the last row may be shorter).

    Row i is tokens [i*L, (i+1)*L) of the document stream, read with one Arrow slice; position_ids restart at 0 at
    each document start and at the row start; every position 0 is labelled -100 (no target of the token before it).
    """

    def __init__(self, docs, *, lengths: np.ndarray, seq_length: int):
        self.docs, self.L = docs.with_format("arrow"), seq_length
        self.lengths = lengths.astype(np.int64)
        self.ends = np.cumsum(self.lengths)
        self.total = int(self.ends[-1]) if len(self.ends) else 0
        self.has_labels = "labels" in docs.column_names

    def __len__(self):
        return -(-self.total // self.L)

    def __getitem__(self, i):
        a, b = i * self.L, min((i + 1) * self.L, self.total)
        first = int(np.searchsorted(self.ends, a, side="right"))  # the document holding token a
        last = int(np.searchsorted(self.ends, b - 1, side="right"))  # ... and token b - 1
        table = self.docs[first : last + 1]
        offset = int(self.ends[first] - self.lengths[first])  # stream index of the first document's first token
        ids = _flat(table, "input_ids")[a - offset : b - offset]
        labels = (_flat(table, "labels")[a - offset : b - offset] if self.has_labels else ids).copy()
        starts = self.ends[first : last + 1] - self.lengths[first : last + 1]  # document starts in stream coordinates
        starts = np.unique(np.concatenate([[a], starts[(starts > a) & (starts < b)]])) - a
        pos = np.arange(b - a) - np.repeat(starts, np.diff(np.append(starts, b - a)))
        labels[starts] = IGNORE
        return {
            "input_ids": torch.from_numpy(ids),
            "labels": torch.from_numpy(labels),
            "position_ids": torch.from_numpy(pos),
        }


def trainable(docs) -> bool:
    """Whether any label is a target (not IGNORE): read column-wise from the memory-mapped Arrow table."""
    import pyarrow.compute as pc

    for chunk in docs.data.table.column("labels").chunks:
        top = pc.max(pc.list_flatten(chunk)).as_py()
        if top is not None and top != IGNORE:
            return True
    return False


def build_hf_dataset(
    cfg, *, tokenizer_path: Optional[str], seed: int = 0, tokenizer=None, tokenizer_key: str = "data.tokenizer"
):
    """The map-style dataset of training rows (see the module docstring); streaming returns an iterable one."""
    raw = load_raw(cfg)
    if cfg.streaming:
        from framework.data.stream import StreamRows

        docs, _ = tokenize(raw, cfg, tokenizer_path=tokenizer_path, tokenizer=tokenizer, key=tokenizer_key)
        return StreamRows(docs, cfg=cfg)
    if len(raw) == 0:
        raise ConfigError("data.path", cfg.path, "holds no rows", "give a corpus with at least one row")
    docs, _ = tokenize(raw, cfg, tokenizer_path=tokenizer_path, tokenizer=tokenizer, key=tokenizer_key)
    lengths = np.asarray(docs.with_format("numpy")["length"], dtype=np.int64)
    nonempty = lengths > 0
    if not nonempty.any():
        raise ConfigError("data.path", cfg.path, "every row tokenizes to nothing", "check data.text_field")
    if lengths.max() < 2:  # a document's first token is predicted by nothing: one token is no target
        raise ConfigError(
            "data.path",
            cfg.path,
            f"no row has a token to predict: all {len(lengths)} documents are "
            f"{int(lengths.max())} token long (empty texts?)",
            "give documents of at least 2 tokens (the first token of each has nothing before it)",
        )
    if "labels" in docs.column_names and not trainable(docs):
        raise ConfigError(
            "data.path",
            cfg.path,
            f"no row has a token to train on (every label is {IGNORE})",
            "give rows whose labels are not all -100, or leave labels out to train on every token",
        )
    if cfg.packing:
        return PackedRows(docs, lengths=lengths, seq_length=cfg.seq_length)
    fits = nonempty & ((lengths <= cfg.seq_length) | cfg.truncation)
    if not fits.any():
        raise ConfigError(
            "data.truncation",
            False,
            f"all {int(nonempty.sum())} documents are longer than "
            f"data.seq_length={cfg.seq_length} (the shortest has {int(lengths[nonempty].min())} tokens)",
            "set data.truncation=true, data.packing=true, or a larger data.seq_length",
        )
    if (fits != nonempty).any():
        warnings.warn(
            f"data: {int((fits != nonempty).sum())} documents longer than data.seq_length="
            f"{cfg.seq_length} are left out (data.truncation=false)"
        )
    return DocumentRows(docs, index=np.nonzero(fits)[0], seq_length=cfg.seq_length)
