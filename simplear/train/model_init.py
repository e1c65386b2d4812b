"""The model a training run starts from: a random preset, a text LM with the vocabulary grown, or a previous stage."""

from __future__ import annotations

from simplear.config import TrainConfig, get_preset
from simplear.model.simplear_lm import CODEBOOK_KEY, SimpleARModel
from simplear.store import Store


def initial_model(config: TrainConfig, codebook_size: int, store: Store) -> SimpleARModel:
    """The fp32 model `config.init` names, checked to hold the dataset's codes; without vision.json, the preset's."""
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
    model.vision = model.vision or get_preset(config.preset).vision
    model.check_vision(model.vision, str(config.init_from or "the random model"), config.preset)
    model.lm.config.architectures = ["Qwen2ForCausalLM"]
    setattr(model.lm.config, CODEBOOK_KEY, model.vocab.codebook_size)
    model.lm.train()
    return model
