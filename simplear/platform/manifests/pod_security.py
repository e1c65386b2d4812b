"""The security every pod of the platform runs with, as the chart's pods do, and the writable volumes it needs."""

from __future__ import annotations

USER_ID = 10001
TMP_VOLUME = "tmp"
SHM_VOLUME = "dshm"


def pod_security_context() -> dict:
    """Non-root UID/GID 10001 with the RuntimeDefault seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": USER_ID,
        "runAsGroup": USER_ID,
        "fsGroup": USER_ID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict:
    """Non-root, no privilege escalation, no capabilities, read-only root filesystem, RuntimeDefault seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": USER_ID,
        "runAsGroup": USER_ID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def scratch_volumes(tmp_size: str, shm_size: str | None) -> list[dict]:
    """An emptyDir for /tmp (the root filesystem is read-only) and, when sized, a memory emptyDir for /dev/shm."""
    volumes = [{"name": TMP_VOLUME, "emptyDir": {"sizeLimit": tmp_size}}]
    if shm_size is not None:
        volumes.append({"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}})
    return volumes


def scratch_mounts(shm: bool) -> list[dict]:
    """Mounts of scratch_volumes: /tmp and, with shm, /dev/shm."""
    mounts = [{"name": TMP_VOLUME, "mountPath": "/tmp"}]
    if shm:
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    return mounts
