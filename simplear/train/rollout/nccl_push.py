"""The GPU weight push: trainer rank 0 broadcasts every parameter over NCCL to the vLLM rollout server.

The trainer side is vLLM's own NCCLTrainerWeightTransferEngine (as trl's VLLMClient does, it needs vLLM
installed beside the trainer); this file only adapts its control calls to the rollout server's routes.
NCCL needs CUDA on both ends, so this path is not exercised on CPU machines or in the CPU test suite.
"""

from __future__ import annotations

from typing import Any

import requests

from simplear.model.simplear_lm import SimpleARModel


class _ServerControl:
    """vLLM's VLLMWeightSyncClient protocol over the rollout server's /weights/nccl routes."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.base_url, self.timeout_s = base_url.rstrip("/"), timeout_s
        self.version = 0

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(f"{self.base_url}{path}", json=body, timeout=self.timeout_s)
        response.raise_for_status()
        return response.json()

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        self._post("/weights/nccl/init", {"init_info": init_info})

    def start_weight_update(self) -> None:
        """The server starts the update inside /weights/nccl/update, under its policy lock."""

    def update_weights(self, update_info: dict[str, Any]) -> None:
        self.version = self._post("/weights/nccl/update", {"update_info": update_info})["policy_version"]

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        """The server finishes the update inside /weights/nccl/update and bumps its policy version."""


class NcclWeightPush:
    """Joins the server's NCCL group once (this process is rank 0), then broadcasts the policy on each push."""

    def __init__(self, base_url: str, master_address: str, master_port: int, timeout_s: float = 600.0) -> None:
        self.control = _ServerControl(base_url, timeout_s)
        self.master_address, self.master_port = master_address, master_port
        self._engine = None

    def push(self, model: SimpleARModel) -> int:
        """Broadcast every parameter of `model.lm`; the server loads them and returns its new policy version."""
        from vllm.distributed.weight_transfer.base import ModuleSource
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo, NCCLTrainerWeightTransferEngine

        if self._engine is None:
            info = NCCLTrainerInitInfo(master_address=self.master_address, master_port=self.master_port,
                                       world_size=2, rank=0)
            self._engine = NCCLTrainerWeightTransferEngine.trainer_init(
                info, client=self.control, source=ModuleSource(model.lm))
        self._engine.source = ModuleSource(model.lm)
        self._engine.send_weights()
        return self.control.version
