"""`simplear serve` arguments and loading: typed config, served resolutions, checkpoint directory and store URI."""

from __future__ import annotations

import argparse
import asyncio

import pytest
from helpers import parser_options
from kserve.protocol.infer_type import InferInput, InferRequest
from prometheus_client import CollectorRegistry

from simplear.cli import main
from simplear.config import PRESETS, ServeBatching, ServeConfig, ServeLimits
from simplear.config.flags import flag_name
from simplear.model.simplear_lm import SimpleARModel
from simplear.serve.loading import load_generator, served_resolutions
from simplear.serve.metrics import ServeMetrics
from simplear.serve.model import SimpleARPredictor
from simplear.serve.serve_command import add_arguments, config_from_args
from simplear.store import Store

TINY = PRESETS["tiny"]


def parse(*argv: str) -> ServeConfig:
    """The serve config of a command line."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_defaults_are_the_config_defaults() -> None:
    """No arguments: ServeConfig's defaults, loopback address and KServe's /mnt/models."""
    config = parse()
    assert config == ServeConfig()
    assert (config.hosts, config.model_dir, config.http_port) == (("127.0.0.1",), "/mnt/models", 8080)


def test_arguments_fill_the_typed_config() -> None:
    """Every flag lands in its config field."""
    config = parse(
        "--random-init", "--preset", "tiny", "--host", "10.1.2.3", "--host", "127.0.0.1", "--http-port", "9000",
        "--model-name", "art",
        "--max-batch", "4", "--batch-window-ms", "5", "--queue-limit", "9", "--deadline-s", "2.5",
        "--max-images-per-request", "3", "--max-prompt-chars", "50", "--max-prompt-tokens", "60",
        "--resolutions", "64", "32", "--codes-only", "--device", "cpu",
    )
    assert config.batching == ServeBatching(max_batch=4, batch_window_ms=5, queue_limit=9, deadline_s=2.5)
    assert config.limits == ServeLimits(max_images_per_request=3, max_prompt_chars=50, max_prompt_tokens=60,
                                        resolutions=(64, 32))
    assert (config.random_init, config.codes_only, config.hosts, config.http_port, config.model_name, config.device) \
        == (True, True, ("10.1.2.3", "127.0.0.1"), 9000, "art", "cpu")


def test_invalid_settings_stop_before_loading(capsys: pytest.CaptureFixture[str]) -> None:
    """An out-of-range setting or two model sources end the command with a message."""
    with pytest.raises(SystemExit, match="max_batch"):
        main(["serve", "--random-init", "--max-batch", "0"])
    with pytest.raises(SystemExit, match="batch window 1000 ms must be shorter than deadline 0.5 s"):
        main(["serve", "--random-init", "--batch-window-ms", "1000", "--deadline-s", "0.5"])
    with pytest.raises(SystemExit):
        main(["serve", "--random-init", "--model-dir", "/tmp/model"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_missing_checkpoint_is_a_clear_error(tmp_path: pytest.TempPathFactory) -> None:
    """A model directory without a checkpoint ends the command with the reason."""
    with pytest.raises(SystemExit, match="is not a model directory"):
        main(["serve", "--model-dir", str(tmp_path)])


def test_served_resolutions_are_checked_against_tokenizer_and_context() -> None:
    """Resolutions must be multiples of the tokenizer's cell and leave room for the longest prompt."""
    assert served_resolutions(ServeLimits(), TINY.vision, 2048) == (64,)
    assert served_resolutions(ServeLimits(resolutions=(32, 64, 32)), TINY.vision, 2048) == (32, 64)
    with pytest.raises(ValueError, match="not a positive multiple of 4"):
        served_resolutions(ServeLimits(resolutions=(62,)), TINY.vision, 2048)
    with pytest.raises(ValueError, match="needs 4608 positions"):
        served_resolutions(ServeLimits(resolutions=(256,)), TINY.vision, 2048)


def test_loads_a_checkpoint_directory_with_its_vision(tmp_path: pytest.TempPathFactory) -> None:
    """A saved checkpoint (what the storage initializer puts in /mnt/models) serves at its vision.json resolution."""
    SimpleARModel.random_init(TINY).save(tmp_path / "model")
    generator, resolutions = load_generator(ServeConfig(model_dir=str(tmp_path / "model"), device="cpu"))
    assert generator.vision == TINY.vision and resolutions == (64,)
    assert generator.tokenizer is not None


def test_loads_a_checkpoint_from_a_store_uri(s3_store: tuple[Store, str], monkeypatch: pytest.MonkeyPatch,
                                             s3_server: object) -> None:
    """--model-dir s3://... reads the checkpoint through the store settings in the environment."""
    store, bucket = s3_store
    SimpleARModel.random_init(TINY).save(f"{bucket}/models/tiny", store=store)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    generator, _ = load_generator(ServeConfig(model_dir=f"{bucket}/models/tiny", device="cpu", codes_only=True))
    assert generator.engine.max_positions == TINY.shape.max_position_embeddings


def test_codes_only_predictor_answers_codes_on_v1_and_v2() -> None:
    """With --codes-only no visual tokenizer is loaded; v1 and v2 answer the visual codes."""
    config = ServeConfig(random_init=True, codes_only=True, device="cpu")
    model = SimpleARPredictor(config, ServeMetrics(CollectorRegistry()))
    assert model.load() and model.generator.tokenizer is None
    v1 = asyncio.run(model.predict({"instances": [{"prompt": "a red square", "seed": 9}]}))
    (prediction,) = v1["predictions"]
    assert set(prediction) == {"codes", "seed", "resolution"} and prediction["seed"] == 9
    assert len(prediction["codes"]) == 256 and all(0 <= c < 16 for c in prediction["codes"])
    request = InferRequest("simplear", [InferInput("prompt", [1], "BYTES", ["a red square"])], parameters={"seed": 9})
    response, _ = asyncio.run(model.predict(request)).to_rest()
    codes = next(o for o in response["outputs"] if o["name"] == "codes")
    assert codes["shape"] == [1, 256] and codes["data"] == prediction["codes"]
    assert [o["name"] for o in model.get_output_types()] == ["codes", "seed", "resolution"]


def test_every_field_of_the_serve_config_is_a_flag() -> None:
    """The flags are generated from ServeConfig (simplear.config.flags): each scalar field, its batching's and its
    limits' has one, typed as the field; a boolean field has --x / --no-x; Literal fields offer their values."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = set(parser_options(parser))
    fields = [*ServeConfig.model_fields, *ServeBatching.model_fields, *ServeLimits.model_fields]
    missing = [name for name in fields if flag_name(name) not in options and name not in ("hosts", "batching",
                                                                                            "limits")]
    assert missing == []
    assert {"--codes-only", "--no-codes-only", "--host"} <= options
    config = parse("--random-init", "--codes-only", "--engine", "torch", "--max-body-bytes", "99")
    assert (config.codes_only, config.engine, config.limits.max_body_bytes) == (True, "torch", 99)
    assert parse("--random-init", "--no-codes-only").codes_only is False
    for bad in (["--engine", "tensorrt"], ["--http-port", "eighty"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
