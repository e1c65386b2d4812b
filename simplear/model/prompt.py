"""The prompt contract of the released checkpoints: templates, caption prefixes, CFG-dropped and negative prompts."""

from __future__ import annotations

import random

from simplear.model.vocab import SOI, T2I

TRAIN_PREFIXES: tuple[str, ...] = (
    "",
    "a photo of",
    "A detailed digital painting of ",
    "A highly realistic image of ",
    "An abstract representation of ",
    "A fantasy illustration featuring ",
    "A photorealistic depiction of ",
    "A vibrant, colorful scene of ",
    "A surreal dreamscape of ",
    "A futuristic cityscape with ",
    "An epic landscape showcasing ",
    "A minimalistic black and white sketch of ",
    "A cinematic view of ",
    "An ethereal depiction of ",
    "A hyper-realistic portrayal of ",
    "An imaginative interpretation of ",
    "A whimsical illustration of ",
    "A magical world featuring ",
    "An iconic scene from ",
    "A steampunk-inspired version of ",
    "A vintage-style artwork of ",
    "A high-tech sci-fi scene with ",
)
GENERATION_PREFIX = "A highly realistic image of "
TRAINING_PREFIX_SETS: dict[str, tuple[str, ...]] = {"upstream": TRAIN_PREFIXES, "generation": (GENERATION_PREFIX,)}
"""Prefixes a training caption is drawn behind: upstream's list (wdrink/SimpleAR simpar/train/preprocess.py), or only
the one `generate` and the fixed evaluation protocol put before a caption."""
NEGATIVE_TEXT = (
    "An image of aerial view, overexposed, low quality, deformation, a poor composition, "
    "bad hands, bad teeth, bad eyes, bad limbs, distortion"
)


def t2i_prompt(caption: str, prefix: str = GENERATION_PREFIX) -> str:
    """`<|t2i|>` + prefix + caption + `<|soi|>`: what the model is conditioned on."""
    return f"{T2I}{prefix}{caption}{SOI}"


def dropped_prompt() -> str:
    """The condition-dropped prompt used in training for classifier-free guidance."""
    return f"{T2I}{SOI}"


def negative_prompt(text: str | None = None) -> str:
    """The unconditional row's prompt: the fixed negative prompt unless another text is given."""
    return t2i_prompt(NEGATIVE_TEXT if text is None else text, prefix="")


def training_prompt(
    caption: str, rng: random.Random, p_drop_cond: float, prefixes: tuple[str, ...] = TRAIN_PREFIXES
) -> str:
    """A training prompt as the original builds it: dropped with `p_drop_cond`, else behind a random prefix."""
    if rng.random() < p_drop_cond:
        return dropped_prompt()
    return t2i_prompt(caption, prefix=rng.choice(prefixes))
