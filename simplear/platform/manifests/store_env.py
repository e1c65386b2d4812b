"""Environment a pod needs to reach the object store: endpoint and TLS inline, credentials from the Secret."""

from __future__ import annotations

from simplear.platform.config import PlatformConfig

CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def store_env(config: PlatformConfig) -> list[dict]:
    """SIMPLEAR_S3_ENDPOINT, SIMPLEAR_S3_SECURE and the two keys of the store Secret (never their values)."""
    env = [
        {"name": "SIMPLEAR_S3_ENDPOINT", "value": config.store_endpoint},
        {"name": "SIMPLEAR_S3_SECURE", "value": "true" if config.store_secure else "false"},
    ]
    env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": config.store_secret, "key": key}}}
            for key in CREDENTIAL_KEYS]
    return env
