"""Registry credentials of the platform's pods: the image pull Secrets named in the platform config."""

from __future__ import annotations

from simplear.platform.config import PlatformConfig


def image_pull_secrets(config: PlatformConfig) -> dict:
    """The pod-spec field `imagePullSecrets` when the platform names any, else nothing."""
    if not config.images.pull_secrets:
        return {}
    return {"imagePullSecrets": [{"name": name} for name in config.images.pull_secrets]}
