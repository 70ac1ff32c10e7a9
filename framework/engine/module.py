"""The module DeepSpeed runs: the causal LM plus the loss, so one engine forward returns the aggregated loss."""

import torch


class CausalLMWithLoss(torch.nn.Module):
    """forward(input_ids, position_ids, shift_labels) -> (loss, global valid tokens), all `[b, s_local]`.

    Runs the decoder to its last hidden states and hands them with the LM head to the loss, which decides whether
    full logits ever exist (loss.tiled). Works for any HF causal LM with get_decoder() / get_output_embeddings().
    """

    def __init__(self, model, loss):
        super().__init__()
        self.model, self.loss = model, loss
        head = model.get_output_embeddings()
        if getattr(loss, "tiled", False) and getattr(loss, "liger", False) and hasattr(head.weight, "ds_id"):
            # Liger's fused linear CE reads the head's weight without calling the head, so ZeRO-3 would never gather
            # it: make it a parameter of this module's forward (gathered, and its gradient reduced) instead
            import deepspeed  # deepspeed.zero is an attribute, not an importable module

            deepspeed.zero.register_external_parameter(self, head.weight)
        embed = model.get_input_embeddings()
        self.head_is_tied = head.weight is embed.weight
        if self.head_is_tied:  # the tiled loss defers the tied weight's gradient reduction to the embedding's backward
            embed.register_forward_hook(_release_grad_on_backward)

    def forward(
        self, input_ids, position_ids, shift_labels, ring_document_ids=None, per_token: bool = False, **_ignored
    ):
        """per_token (evaluation, no gradient): also each position's CE and argmax token, `[b, s_local]` each
        (CausalLMLoss.with_per_token). ring_document_ids: packed rows under ring attention
        (framework.data.adapter.ring_order); transformers passes the extra keyword down to the attention function."""
        extra = {} if ring_document_ids is None else {"ring_document_ids": ring_document_ids}
        out = self.model.get_decoder()(input_ids=input_ids, position_ids=position_ids, use_cache=False, **extra)
        if per_token:
            return self.loss.with_per_token(out.last_hidden_state, self.model.get_output_embeddings(), shift_labels)
        return self.loss(
            out.last_hidden_state, self.model.get_output_embeddings(), shift_labels, head_is_tied=self.head_is_tied
        )


def _release_grad_on_backward(embedding, inputs, output):
    """When the gradient reaches the embedding's output (just before the embedding adds its part to the weight's
    gradient), let ZeRO reduce the weight: see framework.loss.tiled_ce_sum."""
    if output.requires_grad:
        weight = embedding.weight

        def release(grad):
            weight.ds_grad_is_ready = True

        output.register_hook(release)
