"""What every pipeline builds first and last: the found platform, placed tasks, the planned run folders, shared
arguments, the report."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from kfp import dsl
from kfp.dsl import PipelineTask

from pipelines.components.plan import find_platform, plan_run
from pipelines.components.report import report
from pipelines.platform_wiring import ClusterParameters, PlatformNames, on_cpu_pool, on_platform


@dataclass(frozen=True)
class PipelineRun:
    """One pipeline run in the making: how tasks are placed, the arguments every stage component takes, and where
    datasets and token shards go."""

    place: Callable[..., PipelineTask]
    run: dict[str, Any]
    data_root: Any

    def evaluation(self, procs_per_node: Any, protocol: Any, images_per_prompt: Any, cfg_scale: Any,
                   negative_prompt: Any, seed: Any, score_shapes: Any = True) -> dict[str, Any]:
        """The arguments of every evaluate task: the stage arguments plus ranks, protocol, sampling and scorer."""
        return {**self.run, "procs_per_node": procs_per_node, "protocol": protocol,
                "images_per_prompt": images_per_prompt, "cfg_scale": cfg_scale, "negative_prompt": negative_prompt,
                "seed": seed, "score_shapes": score_shapes}

    def report(self, *after: PipelineTask) -> Any:
        """The report task, run once every given task is done; its output is the report folder's URI."""
        page = report(backend=self.run["backend"], root=self.run["root"]).after(*after)
        return self.place(page, display_name="Report").outputs["Output"]


def start_run(backend: Any, store_root: Any, run_tag: Any, runs_dir: Any, stage_timeout_minutes: Any,
              cluster: ClusterParameters) -> PipelineRun:
    """Find the platform, plan the run's folders in the store and return what the pipeline's stages share."""
    found = on_cpu_pool(find_platform(backend=backend, release=cluster.release), cluster,
                        display_name="Find the platform")
    found.set_caching_options(False)  # a reinstalled platform may have other names
    names = PlatformNames(found.outputs["config_map"], found.outputs["store_secret"])
    place = partial(on_platform, cluster=cluster, platform=names)
    plan = place(plan_run(backend=backend, store_root=store_root, run_tag=run_tag,
                          run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), display_name="Plan the run")
    return PipelineRun(place, {"backend": backend, "runs_dir": runs_dir, "root": plan.outputs["root"],
                               "run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER, "timeout_minutes": stage_timeout_minutes},
                       plan.outputs["data_root"])
