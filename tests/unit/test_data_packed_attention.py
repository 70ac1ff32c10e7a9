"""Document masking kernels (framework.attention.packed) against per-document reference attention, one process."""

import pytest
import torch
import torch.nn.functional as F

from framework.attention import packed

LENGTHS = [50, 130, 7, 1, 112]  # crosses 128-token tiles, a 1-token document, a cut-short last tile (300 tokens)


def positions(lengths):
    return torch.cat([torch.arange(n) for n in lengths])


def reference(q, k, v, lengths):
    """Each document alone through causal SDPA, concatenated: `[b, s, h, d]`."""
    k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], dim=1) for t in (k, v))
    out, a = [], 0
    for n in lengths:
        out.append(
            F.scaled_dot_product_attention(q[:, :, a : a + n], k[:, :, a : a + n], v[:, :, a : a + n], is_causal=True)
        )
        a += n
    return torch.cat(out, dim=2).transpose(1, 2)


def qkv(s, b=1):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(b, 4, s, 8, generator=g),
        torch.randn(b, 2, s, 8, generator=g),
        torch.randn(b, 2, s, 8, generator=g),
    )


def test_document_starts_finds_resets_and_none_without():
    assert packed.document_starts(positions(LENGTHS)[None]) == [[0, 50, 180, 187, 188]]
    assert packed.document_starts(torch.arange(10)[None]) is None
    assert packed.document_ids(torch.tensor([[0, 1, 0, 1, 2, 0]])).tolist() == [[0, 0, 1, 1, 1, 2]]


def test_sdpa_per_document_equals_documents_alone():
    q, k, v = qkv(sum(LENGTHS))
    pos = positions(LENGTHS)[None]
    out = packed.sdpa_per_document(q, k, v, packed.document_starts(pos))
    torch.testing.assert_close(out, reference(q, k, v, LENGTHS))
    leaky = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).transpose(1, 2)
    assert (leaky - reference(q, k, v, LENGTHS)).abs().max() > 1e-2  # plain causal over the row does leak


def fake_varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1)):
    """torch 2.11's varlen_attn contract (the GPU one): `[total, h, d]` inputs with equal head counts (it has no
    enable_gqa), causal as window_size=(-1, 0); computed here per document with SDPA."""
    assert q.shape[1] == k.shape[1] == v.shape[1], "varlen_attn takes as many KV heads as query heads"
    assert window_size == (-1, 0) and torch.equal(cu_q, cu_k) and max_q == max_k
    bounds = cu_q.tolist()
    assert max_q == max(e - a for a, e in zip(bounds, bounds[1:]))
    out = [
        F.scaled_dot_product_attention(
            *(t[a:e].transpose(0, 1) for t in (q, k, v)), is_causal=True, scale=scale
        ).transpose(0, 1)
        for a, e in zip(bounds, bounds[1:])
    ]
    return torch.cat(out)


def test_sdpa_varlen_gives_gqa_heads_their_kv_and_equals_documents_alone(monkeypatch):
    import torch.nn.attention.varlen as varlen

    monkeypatch.setattr(varlen, "varlen_attn", fake_varlen_attn)
    q, k, v = qkv(sum(LENGTHS), b=2)  # 4 query heads, 2 KV heads; two rows: offsets across rows too
    starts = packed.document_starts(positions(LENGTHS)[None].expand(2, -1))
    out = packed.sdpa_varlen(q, k, v, starts)
    torch.testing.assert_close(out, reference(q, k, v, LENGTHS), atol=1e-6, rtol=1e-5)


def test_flex_document_block_mask_matches_create_block_mask_and_reference():
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    s = sum(LENGTHS)
    pos = positions(LENGTHS)[None]
    doc = packed.document_ids(pos)[0]
    ours = packed.document_block_mask(pos)
    theirs = create_block_mask(lambda b, h, qi, ki: (qi >= ki) & (doc[qi] == doc[ki]), 1, None, s, s, device="cpu")
    assert torch.equal(ours.to_dense(), theirs.to_dense())
    assert torch.equal(ours.full_kv_num_blocks, theirs.full_kv_num_blocks)
    q, k, v = qkv(s)
    with torch.no_grad():  # FlexAttention has no backward on CPU (torch 2.13): forward only here
        out = flex_attention(q, k, v, block_mask=ours, enable_gqa=True).transpose(1, 2)
    torch.testing.assert_close(out, reference(q, k, v, LENGTHS), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("impl", ["sdpa", "flex_attention"])
def test_installed_function_masks_packed_rows_and_keeps_plain_rows(impl):
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    original = ALL_ATTENTION_FUNCTIONS[impl]
    try:
        assert packed.install(impl) and packed.install(impl)  # idempotent
        fn = ALL_ATTENTION_FUNCTIONS[impl]
        assert fn.core is original and ALL_MASK_ATTENTION_FUNCTIONS[impl]() is None
        module = torch.nn.Module()
        module.is_causal, module.training, module.num_key_value_groups = True, False, 2
        q, k, v = qkv(sum(LENGTHS), b=2)
        pos = positions(LENGTHS)[None].expand(2, -1)
        with torch.no_grad():
            out, _ = fn(module, q, k, v, None, position_ids=pos, scaling=None, dropout=0.0)
            torch.testing.assert_close(out, reference(q, k, v, LENGTHS), atol=1e-5, rtol=1e-4)
            plain = torch.arange(q.shape[2])[None].expand(2, -1)
            out, _ = fn(module, q, k, v, None, position_ids=plain, scaling=None, dropout=0.0)
            torch.testing.assert_close(out, reference(q, k, v, [q.shape[2]]), atol=1e-5, rtol=1e-4)
    finally:
        packed.uninstall(impl)
    assert ALL_ATTENTION_FUNCTIONS[impl] is original and impl not in ALL_MASK_ATTENTION_FUNCTIONS._local_mapping


def test_model_without_sp_keeps_packed_documents_apart_and_builds_no_mask():
    """sp_size=1: the model calls the installed function directly; transformers builds no [s, s] mask for it."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.masking_utils import create_causal_mask

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        ),
    ).eval()
    model.config._attn_implementation = "sdpa"
    lengths = [5, 9, 3]
    ids = torch.randint(0, 64, (1, sum(lengths)))
    pos = positions(lengths)[None]
    with torch.no_grad():
        alone = torch.cat([model(input_ids=part).logits for part in ids.split(lengths, dim=1)], dim=1)
        try:
            packed.install("sdpa")
            mask = create_causal_mask(
                config=model.config,
                inputs_embeds=torch.zeros(1, pos.shape[1], 32),
                attention_mask=None,
                cache=None,
                position_ids=pos,
            )
            ours = model(input_ids=ids, position_ids=pos).logits
        finally:
            packed.uninstall("sdpa")
    assert mask is None
    torch.testing.assert_close(ours, alone, atol=1e-5, rtol=1e-4)
