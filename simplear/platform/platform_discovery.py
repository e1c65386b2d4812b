"""Which SimpleAR platform a pipeline run belongs to: the platform ConfigMap in its namespace, found by its labels.

Compiled pipelines cannot know the Helm release that installed the platform, so they find its ConfigMap (and through
it the store Secret) when they run; several releases in one namespace are told apart by the `release` parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simplear.platform.config import PlatformConfig

PLATFORM_SELECTOR = "app.kubernetes.io/part-of=simplear,app.kubernetes.io/component=platform"
RELEASE_LABEL = "app.kubernetes.io/instance"
PLATFORM_KEY = "platform.json"


class PlatformNotFound(LookupError):
    """No platform ConfigMap, or several and no release to choose one."""


@dataclass(frozen=True)
class FoundPlatform:
    """A platform ConfigMap: its name, the release that installed it and the PlatformConfig it holds."""

    config_map: str
    release: str
    config: PlatformConfig


def find_platform(core: Any, namespace: str, release: str = "") -> FoundPlatform:
    """The platform of `namespace` (of `release` when given), read through CoreV1Api.list_namespaced_config_map."""
    selector = PLATFORM_SELECTOR + (f",{RELEASE_LABEL}={release}" if release else "")
    found = core.list_namespaced_config_map(namespace, label_selector=selector).items
    if not found:
        which = f"of release {release} " if release else ""
        raise PlatformNotFound(f"no SimpleAR platform {which}in namespace {namespace}: install the chart there "
                               f"(helm install simplear helm/simplear -n {namespace}) or run the pipeline where it is")
    if len(found) > 1:
        releases = sorted((item.metadata.labels or {}).get(RELEASE_LABEL, "?") for item in found)
        raise PlatformNotFound(f"{len(found)} SimpleAR platforms in namespace {namespace} (releases "
                               f"{', '.join(releases)}): set the pipeline's release parameter to one of them")
    config_map = found[0]
    if PLATFORM_KEY not in (config_map.data or {}):
        raise PlatformNotFound(f"ConfigMap {config_map.metadata.name} holds no {PLATFORM_KEY}")
    return FoundPlatform(config_map.metadata.name, (config_map.metadata.labels or {}).get(RELEASE_LABEL, ""),
                         PlatformConfig.model_validate_json(config_map.data[PLATFORM_KEY]))
