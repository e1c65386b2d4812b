"""A run's report as JSON, built from its journal: minutes, per-stage timings and per-tag scores, the serving check."""

from __future__ import annotations

import json
from datetime import datetime

from simplear.store import Store, join

JOURNAL = "journal"
STAGE_ORDER = ("init", "data", "tokenize", "pretrain", "sft", "grpo")


def read_journal(store: Store, root: str) -> list[dict]:
    """Every step's journal entry under `<root>/journal`, in the order the steps finished."""
    entries = [json.loads(store.read(uri)) for uri in store.list(join(root, JOURNAL)) if uri.endswith(".json")]
    return sorted(entries, key=lambda entry: entry["finished"])


def _minutes(entries: list[dict]) -> float:
    """Minutes from the plan step's start to the last step's end."""
    started = next(entry["started"] for entry in entries if entry["step"] == "plan")
    finished = max(entry["finished"] for entry in entries)
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds() / 60


def _stage_key(name: str) -> tuple[int, str]:
    """Known stages in lifecycle order, any other (an entry point's evaluated model) after them."""
    return (STAGE_ORDER.index(name), name) if name in STAGE_ORDER else (len(STAGE_ORDER), name)


def build_report(entries: list[dict]) -> dict:
    """`{"minutes", "stages": {stage: {"seconds", <tag>: score, "overall", ...}}, "served", "evaluation"}`."""
    stages: dict[str, dict] = {}
    evaluation: dict = {}
    served: dict = {}
    for entry in entries:
        if entry["stage"] in STAGE_ORDER:
            stage = stages.setdefault(entry["stage"], {})
            stage["seconds"] = stage.get("seconds", 0.0) + entry["seconds"]
            if "steps" in entry:
                stage["steps"] = entry["steps"]
            if entry["stage"] == "grpo":
                stage.update(rollout=entry["rollout"], reward_curve=entry["reward_curve"])
        elif entry["stage"] == "evaluate":
            stage = stages.setdefault(entry["evaluates"], {})
            stage["eval_seconds"] = entry["seconds"]
            if "overall" in entry:
                stage.update(**entry["per_tag"], overall=entry["overall"])
            evaluation = {key: entry[key] for key in ("prompts", "images_per_prompt", "sampling")}
        elif entry["stage"] == "serve":
            served = {"seconds": entry["seconds"], **entry["served"]}
    ordered = {name: stages[name] for name in sorted(stages, key=_stage_key)}
    return {"minutes": _minutes(entries), "stages": ordered, "served": served, "evaluation": evaluation}
