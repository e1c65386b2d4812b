"""Image grids of each evaluated stage on the same held-out prompts: one prompt per tag, its samples side by side."""

from __future__ import annotations

import json
from dataclasses import dataclass

from simplear.eval.geneval_layout import METADATA, prompt_dir
from simplear.store import Store, join

MAX_PROMPTS = 8


@dataclass(frozen=True)
class StageGrids:
    """One evaluated stage's grid PNG per chosen prompt, in the chosen prompts' order."""

    stage: str
    pngs: list[bytes]


def chosen_prompts(store: Store, evaluation: str, prompts: int) -> list[tuple[int, dict]]:
    """The first prompt of each tag (then further ones) up to MAX_PROMPTS: index and GenEval metadata."""
    metadata = [json.loads(store.read(join(prompt_dir(evaluation, i), METADATA)).decode().splitlines()[0])
                for i in range(prompts)]
    firsts = {}
    for index, entry in enumerate(metadata):
        firsts.setdefault(entry["tag"], index)
    order = list(firsts.values()) + [i for i in range(prompts) if i not in firsts.values()]
    return [(i, metadata[i]) for i in order[:MAX_PROMPTS]]


def stage_grids(store: Store, evaluations: dict[str, str], indices: list[int]) -> list[StageGrids]:
    """For each stage (name -> its evaluation folder) the grid.png of each chosen prompt."""
    return [StageGrids(stage, [store.read(join(prompt_dir(folder, i), "grid.png")) for i in indices])
            for stage, folder in evaluations.items()]
