"""SimpleARModel: a Qwen2 causal LM, its tokenizer and where the visual codes sit in its vocabulary."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import ValidationError
from transformers import AutoTokenizer, PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM

from simplear.config import ModelShape, Preset, VisionConfig, get_preset
from simplear.model.generation_config import GenerationDefaults, read_generation_defaults
from simplear.model.text_tokenizer import build_text_tokenizer
from simplear.model.vocab import SPECIAL_TOKENS, VisualVocab
from simplear.store import Store, is_s3, join

CODEBOOK_KEY = "simplear_codebook_size"
VISION_FILE = "vision.json"
QWEN2_ARCHITECTURE = "Qwen2ForCausalLM"
ACCEPTED_ARCHITECTURES = (QWEN2_ARCHITECTURE, "SimpARForCausalLM")
"""Ours, and the released checkpoints' Qwen2ForCausalLM subclass (wdrink/SimpleAR simpar_qwen2.py) that adds only
generation helpers."""


@dataclass
class SimpleARModel:
    """The language model that writes visual codes, with its tokenizer and visual vocabulary."""

    lm: Qwen2ForCausalLM
    tokenizer: PreTrainedTokenizerBase
    vocab: VisualVocab
    vision: VisionConfig | None = None
    generation: GenerationDefaults = field(default_factory=GenerationDefaults)

    @classmethod
    def load(
        cls,
        uri: str | Path,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        codebook_size: int | None = None,
        store: Store | None = None,
    ) -> SimpleARModel:
        """Load a Hugging Face directory (ours or a released SimpleAR checkpoint) from a path or a store URI."""
        with (store or Store()).local_dir(uri) as path:
            origin = str(uri) if is_s3(str(uri)) else str(path.resolve())
            return cls._load_dir(path, dtype, device, codebook_size, origin=origin)

    @classmethod
    def _load_dir(
        cls, path: Path, dtype: torch.dtype, device: str | torch.device, codebook_size: int | None, origin: str
    ) -> SimpleARModel:
        """Load from a local Hugging Face directory, refusing pickled weights and foreign architectures."""
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a model directory: no config.json")
        if not any(path.glob("*.safetensors")):
            raise ValueError(f"{path} holds no safetensors weights (pickled checkpoints are refused)")
        config = Qwen2Config.from_pretrained(path)
        archs = tuple(config.architectures or ())
        if config.model_type != "qwen2" or not set(archs) <= set(ACCEPTED_ARCHITECTURES):
            raise ValueError(
                f"{path}: model_type {config.model_type!r} / architectures {archs} is not a SimpleAR checkpoint"
            )
        tokenizer = AutoTokenizer.from_pretrained(path)
        missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
        if missing:
            raise ValueError(f"{path}: tokenizer lacks the SimpleAR special tokens {missing}")
        size = codebook_size or getattr(config, CODEBOOK_KEY, None) or config.vocab_size - len(tokenizer)
        if size <= 0 or len(tokenizer) + size > config.vocab_size:
            raise ValueError(
                f"{path}: vocabulary of {config.vocab_size} cannot hold {len(tokenizer)} text tokens + {size} codes"
            )
        generation = read_generation_defaults(path)
        lm = Qwen2ForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True).to(device).eval()
        vision = _read_vision(path, origin)
        if vision is not None and vision.codebook_size != size:
            raise ValueError(f"{path}: {VISION_FILE} has {vision.codebook_size} codes but the model has {size}")
        vocab = VisualVocab(offset=len(tokenizer), codebook_size=size)
        return cls(lm=lm, tokenizer=tokenizer, vocab=vocab, vision=vision, generation=generation)

    def save(self, uri: str | Path, store: Store | None = None) -> dict:
        """Write a Hugging Face directory (safetensors, tokenizer, config, vision.json), manifest last."""
        self.lm.config.architectures = [QWEN2_ARCHITECTURE]
        setattr(self.lm.config, CODEBOOK_KEY, self.vocab.codebook_size)
        with tempfile.TemporaryDirectory(prefix="simplear-save-") as tmp:
            self.lm.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            if self.vision is not None:
                (Path(tmp) / VISION_FILE).write_text(self.vision.model_dump_json(indent=2))
            return (store or Store()).put_artifact(tmp, str(uri))

    @classmethod
    def from_text_lm(
        cls, text_lm: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerBase, codebook_size: int
    ) -> SimpleARModel:
        """Add the special tokens and `codebook_size` code rows, new rows set to the mean of the old ones."""
        added = tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
        new_rows = added + codebook_size
        text_lm.resize_token_embeddings(len(tokenizer) + codebook_size, mean_resizing=False)
        with torch.no_grad():
            for emb in {id(e): e for e in (text_lm.get_input_embeddings(), text_lm.get_output_embeddings())}.values():
                emb.weight[-new_rows:] = emb.weight[:-new_rows].mean(dim=0, keepdim=True)
        vocab = VisualVocab(offset=len(tokenizer), codebook_size=codebook_size)
        return cls(lm=text_lm, tokenizer=tokenizer, vocab=vocab)

    @classmethod
    def from_text_lm_dir(cls, uri: str | Path, codebook_size: int, store: Store | None = None) -> SimpleARModel:
        """`from_text_lm` on a text-only Qwen2 checkpoint read from a path or store URI."""
        with (store or Store()).local_dir(uri) as path:
            lm = Qwen2ForCausalLM.from_pretrained(path, use_safetensors=True)
            return cls.from_text_lm(lm, AutoTokenizer.from_pretrained(path), codebook_size)

    @classmethod
    def random_init(cls, preset: Preset, seed: int = 0, dtype: torch.dtype = torch.float32) -> SimpleARModel:
        """A randomly initialised model of a preset's shape with the offline text tokenizer."""
        tokenizer = build_text_tokenizer(total_size=preset.text_vocab_size)
        codebook = preset.vision.codebook_size
        torch.manual_seed(seed)
        lm = Qwen2ForCausalLM(qwen2_config(preset.shape, len(tokenizer) + codebook)).to(dtype).eval()
        vocab = VisualVocab(offset=len(tokenizer), codebook_size=codebook)
        return cls(lm=lm, tokenizer=tokenizer, vocab=vocab, vision=preset.vision)

    def visual_tokenizer_config(
        self,
        preset: str,
        source: str,
        checkpoint: str | None = None,
        resolution: int | None = None,
        fallback: VisionConfig | None = None,
    ) -> VisionConfig:
        """The visual tokenizer to use: the model's vision.json, else `fallback`, else the preset's; the Cosmos
        checkpoint and the resolution overridable; checked against the model's codebook (ValueError otherwise)."""
        trained = self.vision or fallback or get_preset(preset).vision
        update = {key: value for key, value in (("checkpoint", checkpoint), ("resolution", resolution)) if value}
        try:
            vision = VisionConfig(**{**trained.model_dump(), **update})
        except ValidationError as err:
            raise ValueError(f"vision settings: {err}") from None
        self.check_vision(vision, source, preset)
        return vision

    def check_vision(self, vision: VisionConfig, source: str, preset: str) -> None:
        """Refuse a visual tokenizer whose codebook is not the model's, before any image is sampled.

        A released SimpleAR checkpoint carries no vision.json, so its visual tokenizer is the preset's.
        """
        if vision.codebook_size != self.vocab.codebook_size:
            raise ValueError(
                f"{source} writes {self.vocab.codebook_size} visual codes but the visual tokenizer in use "
                f"({vision.kind}, from {'its vision.json' if self.vision else f'--preset {preset}'}) has "
                f"{vision.codebook_size}: "
                f"pass the --preset the model was trained with (0.5B or 1.5B for a released SimpleAR checkpoint, "
                f"which uses Cosmos) and --vision-checkpoint with the Cosmos tokenizer directory"
            )

    def encode_prompts(self, texts: list[str]) -> list[list[int]]:
        """Token ids of already-formatted prompts (no BOS is added, as in the original)."""
        return [self.tokenizer(t, add_special_tokens=False).input_ids for t in texts]


def _read_vision(path: Path, origin: str) -> VisionConfig | None:
    """The visual tokenizer a checkpoint was trained with; a relative Cosmos checkpoint resolves against `origin`."""
    file = path / VISION_FILE
    if not file.is_file():
        return None
    vision = VisionConfig.model_validate_json(file.read_text())
    if vision.checkpoint and not is_s3(vision.checkpoint) and not Path(vision.checkpoint).is_absolute():
        vision = vision.model_copy(update={"checkpoint": join(origin, vision.checkpoint)})
    return vision


def qwen2_config(shape: ModelShape, vocab_size: int) -> Qwen2Config:
    """A transformers Qwen2 config of a preset shape and vocabulary size."""
    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        max_position_embeddings=shape.max_position_embeddings,
        rms_norm_eps=shape.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": shape.rope_theta},
        tie_word_embeddings=shape.tie_word_embeddings,
        architectures=["Qwen2ForCausalLM"],
    )
