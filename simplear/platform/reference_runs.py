"""The reference run of every stage, end to end on the synthetic shapes data with the tiny preset, as objects, and two
variants: pretraining on two nodes, and GRPO with its rollout server on the rollout pool instead of as a sidecar."""

from __future__ import annotations

from simplear.platform.config import PlatformConfig
from simplear.platform.default_platform import chart_fullname
from simplear.platform.manifests import (
    inference_service,
    pytorch_job,
    rollout_deployment,
    rollout_service,
    serve_service_account,
    serving_runtime,
)
from simplear.platform.stage_spec import RolloutSpec, StageSpec


def reference_specs(config: PlatformConfig, release: str) -> dict[str, StageSpec]:
    """Stage -> the spec of its reference run; each reads the store paths the previous one wrote."""
    data, checkpoints = f"s3://{config.data_bucket}", f"s3://{config.checkpoint_bucket}"
    prefix = chart_fullname(release)
    shapes, tokens, runs = f"{data}/shapes", f"{data}/tokens/shapes", f"{checkpoints}/runs"
    return {
        "shapes": StageSpec(name=f"{prefix}-shapes", args=("--out", shapes, "--n", "2000")),
        "tokenize": StageSpec(name=f"{prefix}-tokenize", args=(
            "--meta", f"{shapes}/meta.jsonl", "--output", tokens, "--preset", "tiny")),
        "pretrain": StageSpec(name=f"{prefix}-pretrain", args=(
            "--data", tokens, "--output", f"{runs}/pretrain", "--preset", "tiny", "--max-steps", "2000")),
        "sft": StageSpec(name=f"{prefix}-sft", args=(
            "--data", tokens, "--output", f"{runs}/sft", "--init", "checkpoint",
            "--init-from", f"{runs}/pretrain/final", "--max-steps", "500")),
        "grpo": StageSpec(
            name=f"{prefix}-grpo",
            args=("--prompts", f"{shapes}/meta.jsonl", "--output", f"{runs}/grpo",
                  "--init-from", f"{runs}/sft/final", "--max-steps", "100"),
            rollout=RolloutSpec(model=f"{runs}/sft/final"),
        ),
        "evaluate": StageSpec(name=f"{prefix}-evaluate", args=(
            "--benchmark", "geneval", "--prompts", f"{shapes}/evaluation_metadata.jsonl", "--out", f"{runs}/evaluate",
            "--model", f"{runs}/grpo/final", "--score-shapes")),
    }


def reference_documents(config: PlatformConfig, release: str) -> dict[str, list[dict]]:
    """File name -> the objects `kubectl apply -f` creates for that step, numbered in run order, then the variants."""
    specs = reference_specs(config, release)
    documents = {f"{index:02d}-{stage}.yaml": [pytorch_job(config, stage, spec)]
                 for index, (stage, spec) in enumerate(specs.items(), start=1)}
    fullname = chart_fullname(release)
    serving = config.serving
    if serving is not None:
        documents[f"{len(specs) + 1:02d}-serve.yaml"] = [
            serve_service_account(config, serving.service_account),
            serving_runtime(config),
            inference_service(config, config.inference_service or fullname,
                              f"s3://{config.checkpoint_bucket}/runs/grpo/final"),
        ]
    pretrain = specs["pretrain"]
    two_nodes = pretrain.model_copy(update={
        "name": f"{pretrain.name}-2nodes",
        "args": tuple(a.replace("/runs/pretrain", "/runs/pretrain-2nodes") for a in pretrain.args), "nodes": 2})
    documents[f"{len(documents) + 1:02d}-pretrain-two-nodes.yaml"] = [pytorch_job(config, "pretrain", two_nodes)]
    grpo = specs["grpo"]
    pool = grpo.model_copy(update={
        "name": f"{grpo.name}-pool", "args": tuple(a.replace("/runs/grpo", "/runs/grpo-pool") for a in grpo.args),
        "rollout": grpo.rollout.model_copy(update={"placement": "pool"})})
    documents[f"{len(documents) + 1:02d}-grpo-rollout-pool.yaml"] = [
        pytorch_job(config, "grpo", pool), rollout_deployment(config, pool, owner_uid=None),
        rollout_service(pool, owner_uid=None)]
    return documents
