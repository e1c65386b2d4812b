"""The vocabulary and prompt contract, presets, text-LM conversion, and loading and saving checkpoints."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from transformers import Qwen2ForCausalLM

from simplear.config import PRESETS, ModelShape, get_preset
from simplear.model.prompt import (
    GENERATION_PREFIX,
    NEGATIVE_TEXT,
    TRAIN_PREFIXES,
    dropped_prompt,
    negative_prompt,
    t2i_prompt,
    training_prompt,
)
from simplear.model.simplear_lm import SimpleARModel, qwen2_config
from simplear.model.text_tokenizer import build_text_tokenizer
from simplear.model.vocab import SPECIAL_TOKENS, VisualVocab
from simplear.store import Store

SMALL = ModelShape(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2, num_kv_heads=1, rope_theta=1e4)


def test_prompt_templates_are_the_released_ones() -> None:
    """Conditional, CFG-dropped and negative prompts read exactly as the original builds them."""
    assert t2i_prompt("a dog") == "<|t2i|>A highly realistic image of a dog<|soi|>"
    assert dropped_prompt() == "<|t2i|><|soi|>"
    assert negative_prompt() == f"<|t2i|>{NEGATIVE_TEXT}<|soi|>"
    assert negative_prompt("blurry") == "<|t2i|>blurry<|soi|>"
    assert GENERATION_PREFIX in TRAIN_PREFIXES and len(TRAIN_PREFIXES) == 22


def test_training_prompt_drops_the_condition_at_its_rate() -> None:
    """p_drop_cond of the prompts are dropped; the others carry one of the original prefixes."""
    rng = random.Random(0)
    prompts = [training_prompt("a cat", rng, 0.25) for _ in range(4000)]
    dropped = sum(p == dropped_prompt() for p in prompts) / len(prompts)
    assert abs(dropped - 0.25) < 0.03
    kept = [p for p in prompts if p != dropped_prompt()]
    assert all(any(p == t2i_prompt("a cat", prefix) for prefix in TRAIN_PREFIXES) for p in kept)
    assert len(set(kept)) == len(set(TRAIN_PREFIXES))


def test_visual_codes_follow_the_text_vocabulary() -> None:
    """Code c has id len(text tokenizer) + c, with the seven special tokens inside the text vocabulary."""
    model = SimpleARModel.random_init(get_preset("tiny"))
    tok = model.tokenizer
    assert all(t in tok.get_vocab() for t in SPECIAL_TOKENS)
    assert model.vocab == VisualVocab(offset=len(tok), codebook_size=16)
    assert model.lm.config.vocab_size == len(tok) + 16
    codes = torch.tensor([0, 5, 15])
    assert model.vocab.to_ids(codes).tolist() == [len(tok), len(tok) + 5, len(tok) + 15]
    assert torch.equal(model.vocab.to_codes(model.vocab.to_ids(codes)), codes)
    with pytest.raises(ValueError, match="visual-code range"):
        model.vocab.to_codes(torch.tensor([3]))
    ids = model.encode_prompts([t2i_prompt("a red circle")])[0]
    assert ids[0] == tok.convert_tokens_to_ids("<|t2i|>") and ids[-1] == tok.convert_tokens_to_ids("<|soi|>")


def test_offline_tokenizer_is_deterministic_and_can_take_qwen_offsets() -> None:
    """Built twice it is the same; padded to Qwen2.5's size the specials sit where the released ones do."""
    assert build_text_tokenizer().get_vocab() == build_text_tokenizer().get_vocab()
    qwen_like = build_text_tokenizer(total_size=PRESETS["0.5B"].text_vocab_size)
    assert len(qwen_like) == 151_672
    assert qwen_like.convert_tokens_to_ids("<|t2i|>") == 151_665
    assert qwen_like.convert_tokens_to_ids("<|sov|>") == 151_671


@pytest.mark.parametrize(("name", "params"), [("0.5B", 494_032_768), ("1.5B", 1_543_714_304)])
def test_presets_have_the_qwen25_shapes(name: str, params: int) -> None:
    """With Qwen2.5's 151,936-row embedding the presets have exactly the published parameter counts."""
    with torch.device("meta"):
        lm = Qwen2ForCausalLM(qwen2_config(PRESETS[name].shape, 151_936))
    assert sum(p.numel() for p in lm.parameters()) == params
    assert PRESETS[name].vision.codebook_size == 64_000 and PRESETS[name].vision.num_codes == 4096


def test_tiny_preset_fits_vllm_cpu_attention() -> None:
    """vLLM's CPU attention needs head size >= 32."""
    assert get_preset("tiny").shape.head_dim >= 32
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("7B")


def test_the_tiny_models_rope_turns_once_per_row_of_its_code_grid() -> None:
    """One rotary frequency of the built tiny model turns by exactly 2 pi over a row of codes (16), so the query of a
    code can match the key of the code above it, and of <|soi|>'s column, at every distance a multiple of a row."""
    preset = get_preset("tiny")
    model = SimpleARModel.random_init(preset)
    angles = model.lm.model.rotary_emb.inv_freq.double() * preset.vision.grid
    turns = angles / (2 * torch.pi)
    assert torch.isclose(turns, torch.ones_like(turns), atol=1e-6).sum() == 1
    default = Qwen2ForCausalLM(qwen2_config(preset.shape.model_copy(update={"rope_theta": 10_000.0}), 600))
    default_turns = default.model.rotary_emb.inv_freq.double() * preset.vision.grid / (2 * torch.pi)
    assert not torch.isclose(default_turns, torch.ones_like(default_turns), atol=1e-2).any(), "10,000 has none"


@pytest.mark.parametrize("tied", [True, False])
def test_from_text_lm_adds_rows_initialised_to_the_mean(tied: bool) -> None:
    """Special tokens and code rows are appended; every new row is the mean of the old rows; old rows stay."""
    tokenizer = build_text_tokenizer(simplear_specials=False)
    torch.manual_seed(0)
    text_lm = Qwen2ForCausalLM(qwen2_config(SMALL.model_copy(update={"tie_word_embeddings": tied}), len(tokenizer) + 5))
    old_in = text_lm.get_input_embeddings().weight.detach().clone()
    old_out = text_lm.get_output_embeddings().weight.detach().clone()
    text_len = len(tokenizer)
    model = SimpleARModel.from_text_lm(text_lm, tokenizer, codebook_size=40)
    assert model.vocab == VisualVocab(offset=text_len + len(SPECIAL_TOKENS), codebook_size=40)
    pairs = ((model.lm.get_input_embeddings().weight, old_in), (model.lm.get_output_embeddings().weight, old_out))
    for new, old in pairs:
        assert new.shape[0] == text_len + len(SPECIAL_TOKENS) + 40
        torch.testing.assert_close(new[:text_len], old[:text_len])
        expected = old[:text_len].mean(dim=0)
        torch.testing.assert_close(new[text_len:], expected.expand(len(SPECIAL_TOKENS) + 40, -1))


def test_from_text_lm_dir_reads_a_local_directory_or_an_artifact(s3_store: tuple[Store, str], tmp_path: Path) -> None:
    """A text-only checkpoint converts the same from a path as from the store, via Store.local_dir."""
    store, bucket = s3_store
    tokenizer = build_text_tokenizer(simplear_specials=False)
    Qwen2ForCausalLM(qwen2_config(SMALL, len(tokenizer))).save_pretrained(tmp_path / "qwen")
    tokenizer.save_pretrained(tmp_path / "qwen")
    store.put_artifact(tmp_path / "qwen", f"{bucket}/qwen")
    local = SimpleARModel.from_text_lm_dir(tmp_path / "qwen", codebook_size=12)
    remote = SimpleARModel.from_text_lm_dir(f"{bucket}/qwen", codebook_size=12, store=store)
    assert remote.vocab == local.vocab == VisualVocab(offset=len(tokenizer) + len(SPECIAL_TOKENS), codebook_size=12)
    torch.testing.assert_close(_logits(remote), _logits(local))


def test_visual_tokenizer_config_prefers_vision_json_then_fallback_then_preset() -> None:
    """vision.json wins; without it the caller's fallback (the token dataset's), else the preset's; overrides apply."""
    model = SimpleARModel.random_init(get_preset("tiny"))
    tiny = get_preset("tiny").vision
    own = tiny.model_copy(update={"resolution": 32})
    model.vision = own
    assert model.visual_tokenizer_config("tiny", "m", fallback=tiny) == own
    model.vision = None
    assert model.visual_tokenizer_config("tiny", "m", fallback=own) == own
    assert model.visual_tokenizer_config("tiny", "m") == tiny
    overridden = model.visual_tokenizer_config("tiny", "m", checkpoint="s3://b/cosmos", resolution=128)
    assert overridden == tiny.model_copy(update={"checkpoint": "s3://b/cosmos", "resolution": 128})
    assert model.vision is None, "the model itself is left as it was"


def test_visual_tokenizer_config_refuses_a_bad_resolution_or_another_codebook() -> None:
    model = SimpleARModel.random_init(get_preset("tiny"))
    with pytest.raises(ValueError, match="(?s)vision settings: .*resolution 30 is not a multiple of downsample 4"):
        model.visual_tokenizer_config("tiny", "m", resolution=30)
    model.vision = None
    with pytest.raises(ValueError, match=r"m writes 16 visual codes .*from --preset 0\.5B\) has 64000"):
        model.visual_tokenizer_config("0.5B", "m", checkpoint="/cosmos")


def _logits(model: SimpleARModel) -> torch.Tensor:
    ids = torch.tensor(model.encode_prompts([t2i_prompt("a blue cross")]))
    with torch.no_grad():
        return model.lm(ids).logits


def test_save_and_load_round_trip_locally_as_an_artifact(tmp_path: Path) -> None:
    """A saved model is a Hugging Face directory of safetensors with a manifest, and loads to the same logits."""
    model = SimpleARModel.random_init(get_preset("tiny"), seed=1)
    model.save(tmp_path / "ckpt")
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "manifest.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"] and config["simplear_codebook_size"] == 16
    loaded = SimpleARModel.load(tmp_path / "ckpt")
    assert loaded.vocab == model.vocab
    torch.testing.assert_close(_logits(loaded), _logits(model))


def test_save_and_load_round_trip_through_s3(s3_store: tuple[Store, str]) -> None:
    """The same through the S3 store: the upload is a verified artifact."""
    store, bucket = s3_store
    model = SimpleARModel.random_init(get_preset("tiny"), seed=2)
    model.save(f"{bucket}/models/tiny", store=store)
    assert store.artifact_exists(f"{bucket}/models/tiny")
    loaded = SimpleARModel.load(f"{bucket}/models/tiny", store=store)
    torch.testing.assert_close(_logits(loaded), _logits(model))


def test_loads_the_released_simplear_layout(tmp_path: Path) -> None:
    """architectures SimpARForCausalLM, model_type qwen2, no codebook key: the codebook is vocab minus text."""
    model = SimpleARModel.random_init(get_preset("tiny"), seed=4)
    released = tmp_path / "released"
    model.lm.save_pretrained(released)
    model.tokenizer.save_pretrained(released)
    config = json.loads((released / "config.json").read_text())
    config["architectures"] = ["SimpARForCausalLM"]
    config.pop("simplear_codebook_size", None)
    (released / "config.json").write_text(json.dumps(config))
    loaded = SimpleARModel.load(released)
    assert loaded.vocab == model.vocab
    torch.testing.assert_close(_logits(loaded), _logits(model))


def test_refuses_pickles_foreign_models_and_missing_specials(tmp_path: Path) -> None:
    """Pickled weights, another architecture or a tokenizer without the specials are clear errors."""
    model = SimpleARModel.random_init(get_preset("tiny"), seed=5)
    pickled = tmp_path / "pickled"
    model.lm.save_pretrained(pickled)
    model.tokenizer.save_pretrained(pickled)
    weights = next(pickled.glob("*.safetensors"))
    torch.save({}, pickled / "pytorch_model.bin")
    weights.unlink()
    with pytest.raises(ValueError, match="pickled checkpoints are refused"):
        SimpleARModel.load(pickled)

    foreign = tmp_path / "foreign"
    model.lm.save_pretrained(foreign)
    model.tokenizer.save_pretrained(foreign)
    config = json.loads((foreign / "config.json").read_text())
    config["architectures"] = ["LlamaForCausalLM"]
    (foreign / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not a SimpleAR checkpoint"):
        SimpleARModel.load(foreign)

    plain = tmp_path / "plain"
    model.lm.save_pretrained(plain)
    build_text_tokenizer(simplear_specials=False).save_pretrained(plain)
    with pytest.raises(ValueError, match="lacks the SimpleAR special tokens"):
        SimpleARModel.load(plain)

    with pytest.raises(FileNotFoundError, match="no config.json"):
        SimpleARModel.load(tmp_path / "nothing")


def test_checkpoint_carries_its_visual_tokenizer(tmp_path: Path) -> None:
    """vision.json travels with the weights; a relative Cosmos checkpoint resolves inside the model directory."""
    model = SimpleARModel.random_init(get_preset("tiny"), seed=6)
    model.save(tmp_path / "tiny")
    assert SimpleARModel.load(tmp_path / "tiny").vision == get_preset("tiny").vision

    cosmos = get_preset("0.5B").vision.model_copy(update={"checkpoint": "cosmos"})
    model.vision = cosmos.model_copy(update={"codebook_size": 16})
    model.save(tmp_path / "with-cosmos")
    assert SimpleARModel.load(tmp_path / "with-cosmos").vision.checkpoint == str(tmp_path / "with-cosmos" / "cosmos")

    model.vision = cosmos
    model.save(tmp_path / "mismatch")
    with pytest.raises(ValueError, match="has 64000 codes but the model has 16"):
        SimpleARModel.load(tmp_path / "mismatch")
