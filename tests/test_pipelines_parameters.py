"""Pipeline parameters: typed, described, with defaults that match the shapes recipe and the chart's defaults."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from helpers import objects, one

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))  # pipelines/ is a folder of the repository, not an installed package

from pipelines.compile import COMPILED, PIPELINES  # noqa: E402
from simplear.config import SHAPES_RECIPES, TRAIN_RECIPE, ShapesRecipe, TrainRecipe  # noqa: E402

KFP_TYPES = {str: "STRING", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", bool: "BOOLEAN", dict: "STRUCT",
             list: "LIST"}
REQUIRED = {
    "simplear-lifecycle": set(),
    "simplear-train": {"pretrain_meta_uri", "sft_meta_uri", "eval_data_uri", "vision_checkpoint_uri", "text_lm_uri"},
    "simplear-tokenize": {"meta_uri"},
    "simplear-pretrain": {"pretrain_tokens_uri", "eval_data_uri"},
    "simplear-sft": {"init_model_uri", "sft_tokens_uri", "eval_data_uri"},
    "simplear-grpo": {"init_model_uri", "prompts_data_uri", "eval_data_uri"},
    "simplear-evaluate-deploy": {"model_uri", "eval_data_uri"},
}


def parameters(name: str) -> dict[str, dict]:
    """The pipeline's input parameters as compiled."""
    spec = next(yaml.safe_load_all((COMPILED / f"{name}.yaml").read_text()))
    return spec["root"]["inputDefinitions"]["parameters"]


def test_every_parameter_is_described_and_only_the_starting_points_are_required() -> None:
    """Each parameter has a description; the entry points require exactly their existing data and checkpoints."""
    for name in PIPELINES:
        params = parameters(name)
        assert all(p.get("description", "").strip() for p in params.values()), name
        assert {key for key, p in params.items() if not p.get("isOptional")} == REQUIRED[name], name


def test_lifecycle_defaults_are_the_full_shapes_recipe_with_their_types() -> None:
    """Every recipe field is a lifecycle parameter of the same type whose default is the full recipe's value."""
    params = parameters("simplear-lifecycle")
    recipe = SHAPES_RECIPES["full"].model_dump()
    recipe["procs_per_node"] = 0  # on the cluster: the pool's GPUs per pod
    for field, info in ShapesRecipe.model_fields.items():
        assert params[field]["parameterType"] == KFP_TYPES[info.annotation], field
        assert params[field]["defaultValue"] == recipe[field], field


def test_train_defaults_are_the_train_recipe_with_their_types() -> None:
    """simplear-train's parameters of a recipe field have its type and the recipe's (upstream's) value."""
    params = parameters("simplear-train")
    recipe = TRAIN_RECIPE.model_dump()
    for field, info in TrainRecipe.model_fields.items():
        assert params[field]["parameterType"] == KFP_TYPES[info.annotation], field
        assert params[field]["defaultValue"] == recipe[field], field
    assert (recipe["train_lr_schedule"], recipe["train_weight_decay"], recipe["train_loss_on"]) == ("constant", 0.01,
                                                                                                     "all")
    assert (recipe["grpo_policy"], recipe["grpo_beta"], recipe["eval_protocol"]) == ("plain", 0.04, "simplear")


def test_backend_and_rollout_defaults_are_the_clusters() -> None:
    """Registered with the chart, the pipelines run stages as PyTorchJobs, GRPO rollouts on vLLM when served."""
    for name in PIPELINES:
        assert parameters(name)["backend"]["defaultValue"] == "kubernetes"
    for name in ("simplear-lifecycle", "simplear-grpo"):
        assert parameters(name)["rollout_engine"]["defaultValue"] == "vllm"
    assert parameters("simplear-lifecycle")["rollout"]["defaultValue"] == "in_process"
    assert parameters("simplear-grpo")["rollout"]["defaultValue"] == "server"


def test_no_default_assumes_the_release_name() -> None:
    """Release-named objects are found when the run starts: no parameter defaults to a release's Secret, ConfigMap,
    ServiceAccount or InferenceService; the cpu pool's placement defaults to the chart's defaults."""
    docs = objects("default")
    platform = json.loads(one(docs, "ConfigMap", "simplear-platform")["data"]["platform.json"])
    for name in PIPELINES:
        params = parameters(name)
        assert "store_secret" not in params and "platform_config_map" not in params
        assert params["release"]["defaultValue"] == ""
        assert params["cpu_node_selector"]["defaultValue"] == platform["pools"]["cpu"]["nodeSelector"]
        assert params["cpu_tolerations"]["defaultValue"] == platform["pools"]["cpu"]["tolerations"]
        text = (COMPILED / f"{name}.yaml").read_text()
        assert not re.search(r"simplear-(store|platform|pipeline)\b", text), name
    for name in ("simplear-lifecycle", "simplear-evaluate-deploy"):
        assert parameters(name)["inference_service"]["defaultValue"] == ""


def test_a_demo_seed_moves_every_seed_of_the_recipe_and_seed_0_is_the_recipe() -> None:
    """`simplear demo --seed S` runs `recipe.seeded(S)`: new data, init, evaluation and GRPO seeds, nothing else."""
    recipe = SHAPES_RECIPES["full"]
    assert recipe.seeded(0) == recipe
    moved = {field for field, value in recipe.seeded(2).model_dump().items() if value != getattr(recipe, field)}
    assert moved == {"pretrain_data_seed", "sft_data_seed", "seed"}
    seeds = [recipe.seeded(s) for s in range(3)]
    data_seeds = [(r.pretrain_data_seed, r.sft_data_seed) for r in seeds]
    assert len({seed for pair in data_seeds for seed in pair}) == 6, "no two datasets of the three seeds share a seed"
    with pytest.raises(ValueError, match="from 0"):
        recipe.seeded(-1)
