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

    def forward(self, input_ids, position_ids, shift_labels, **_ignored):
        out = self.model.get_decoder()(input_ids=input_ids, position_ids=position_ids, use_cache=False)
        return self.loss(out.last_hidden_state, self.model.get_output_embeddings(), shift_labels)
