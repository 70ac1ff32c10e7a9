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
            from deepspeed.zero import register_external_parameter

            register_external_parameter(self, head.weight)

    def forward(self, input_ids, position_ids, shift_labels, **_ignored):
        out = self.model.get_decoder()(input_ids=input_ids, position_ids=position_ids, use_cache=False)
        return self.loss(out.last_hidden_state, self.model.get_output_embeddings(), shift_labels)
