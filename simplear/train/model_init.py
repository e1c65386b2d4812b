"""The model a training run starts from: a random preset, a text LM with the vocabulary grown, or a previous stage."""

from __future__ import annotations

from simplear.config import PRESETS, TrainConfig, VisionConfig, get_preset
from simplear.model.simplear_lm import CODEBOOK_KEY, SimpleARModel
from simplear.store import Store


def dataset_vision(config: TrainConfig, tokens: dict) -> VisionConfig:
    """The visual tokenizer a token dataset was made with (its manifest's `tokens` block): the preset's when of the
    same kind, else the first preset's of that kind, at the dataset's resolution and with its checkpoint."""
    vision = get_preset(config.preset).vision
    kind = tokens.get("vision", vision.kind)
    if kind != vision.kind:
        vision = next(preset.vision for preset in PRESETS.values() if preset.vision.kind == kind)
    update = {"resolution": tokens.get("resolution", vision.resolution)}
    if tokens.get("vision_checkpoint"):
        update["checkpoint"] = tokens["vision_checkpoint"]
    return VisionConfig(**{**vision.model_dump(), **update})


def initial_model(config: TrainConfig, codebook_size: int, store: Store,
                  vision: VisionConfig | None = None) -> SimpleARModel:
    """The fp32 model `config.init` names, checked to hold the dataset's codes; without vision.json, `vision` (the
    token dataset's visual tokenizer) or else the preset's."""
    if config.init == "random":
        preset = get_preset(config.preset)
        if config.shape is not None:
            preset = preset.model_copy(update={"shape": config.shape})
        if preset.vision.codebook_size != codebook_size:
            raise ValueError(
                f"preset {preset.name!r} has {preset.vision.codebook_size} visual codes but the token dataset "
                f"{config.data} has {codebook_size}"
            )
        model = SimpleARModel.random_init(preset, seed=config.seed)
    elif config.init == "text_lm":
        model = SimpleARModel.from_text_lm_dir(str(config.init_from), codebook_size, store=store)
    else:
        model = SimpleARModel.load(str(config.init_from), store=store)
        if model.vocab.codebook_size != codebook_size:
            raise ValueError(
                f"{config.init_from} writes {model.vocab.codebook_size} visual codes but the token dataset "
                f"{config.data} has {codebook_size}"
            )
    model.vision = model.visual_tokenizer_config(config.preset, str(config.init_from or "the random model"),
                                                 fallback=vision)
    model.lm.config.architectures = ["Qwen2ForCausalLM"]
    setattr(model.lm.config, CODEBOOK_KEY, model.vocab.codebook_size)
    model.lm.train()
    return model
