"""vLLM worker extension: reload a checkpoint in place and keep a tied LM head tied to the new embeddings.

vLLM's in-place reload (and its NCCL weight transfer) rebuilds each layer from the weights it receives. A
checkpoint with tied embeddings (all SimpleAR checkpoints) carries no `lm_head.weight`, so the head would keep
the old tensor; these methods point it back at the new embedding and redo its kernel preparation (the CPU GEMM
packing), so the next-token distribution is the new checkpoint's. Called through `collective_rpc`.
"""

from __future__ import annotations


class TiedHeadReload:
    """Mixed into vLLM's Worker via `worker_extension_cls`."""

    def reload_checkpoint(self, weights_path: str) -> None:
        """Reload every weight from a Hugging Face directory, then re-tie the head."""
        self.reload_weights(weights_path=weights_path)
        self.tie_lm_head()

    def tie_lm_head(self) -> None:
        """Share the embedding with the LM head again (when the model ties them) and re-prepare the head."""
        model = self.model_runner.get_model()
        if not getattr(model.config, "tie_word_embeddings", False):
            return
        model.lm_head.weight = model.model.embed_tokens.weight
        model.lm_head.quant_method.process_weights_after_loading(model.lm_head)
