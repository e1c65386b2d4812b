"""An offline byte-level BPE text tokenizer with the SimpleAR special tokens, for tests and the demo."""

from __future__ import annotations

import json

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from simplear.config import DEFAULT_PALETTE
from simplear.model.prompt import NEGATIVE_TEXT, TRAIN_PREFIXES
from simplear.model.vocab import SPECIAL_TOKENS

QWEN_SPECIALS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_WORDS = (
    "a an the one two three four five six seven eight nine ten photo image picture of and with on in "
    "left right above below under over next to near beside between top bottom middle center corner "
    "square squares circle circles triangle triangles cross crosses shape shapes object objects "
    "big small large tiny plain background white black gray grey color colour colored "
    "there is are it its this that some many few no not only each every side"
)


def _corpus() -> list[str]:
    """Deterministic training text: prompt prefixes, negative prompt, colours and scene words."""
    colours = " ".join(c.name for c in DEFAULT_PALETTE)
    return [*TRAIN_PREFIXES, NEGATIVE_TEXT, colours, _WORDS] * 4


def build_text_tokenizer(
    vocab_size: int = 512, total_size: int | None = None, simplear_specials: bool = True
) -> PreTrainedTokenizerBase:
    """A BPE tokenizer trained in code; `total_size` pads it so that len(tokenizer) equals that number.

    Without `simplear_specials` it is a plain text tokenizer, as a text-only Qwen checkpoint carries.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(QWEN_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    if total_size is not None:
        tok = _pad_vocab(tok, total_size - (len(SPECIAL_TOKENS) if simplear_specials else 0))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    if simplear_specials:
        hf.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return hf


def _pad_vocab(tok: Tokenizer, size: int) -> Tokenizer:
    """Append never-produced filler entries to the BPE vocabulary until it holds `size` ids."""
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    if size < len(vocab):
        raise ValueError(f"cannot pad a vocabulary of {len(vocab)} down to {size}")
    vocab.update({f"<|reserved_{i}|>": i for i in range(len(vocab), size)})
    return Tokenizer.from_str(json.dumps(spec))
