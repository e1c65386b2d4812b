"""Object-store settings: the S3 endpoint and credentials, parsed from the environment in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import Field, SecretStr

from simplear.config.presets import Strict


class StoreSettings(Strict):
    """S3 endpoint and credentials, read from the same variables KServe's storage initializer uses."""

    endpoint: str | None = None
    access_key: str | None = None
    secret_key: SecretStr | None = None
    secure: bool = False
    region: str | None = None
    retry_seconds: float = Field(
        default=300.0, ge=0.0, description="how long transient S3 failures are retried, with backoff, before an error"
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreSettings:
        """Settings from SIMPLEAR_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, SIMPLEAR_S3_SECURE and
        SIMPLEAR_S3_RETRY_SECONDS; pydantic's ValidationError when one holds an invalid value.

        The flag and the number are parsed by pydantic: SIMPLEAR_S3_SECURE takes true/false, 1/0, yes/no, on/off
        (any case) and refuses anything else; empty variables count as unset.
        """
        env = os.environ if env is None else env
        secret = env.get("AWS_SECRET_ACCESS_KEY")
        given = {field: env.get(name, "").strip() for field, (name, _) in STORE_ENV_TYPED.items()}
        return cls(
            endpoint=env.get("SIMPLEAR_S3_ENDPOINT") or None,
            access_key=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_key=SecretStr(secret) if secret else None,
            region=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or None,
            **{field: value for field, value in given.items() if value},
        )


STORE_ENV_TYPED = {
    "secure": ("SIMPLEAR_S3_SECURE", "true or false (also 1/0, yes/no, on/off)"),
    "retry_seconds": ("SIMPLEAR_S3_RETRY_SECONDS", "a number of seconds"),
}
"""The StoreSettings fields read from a typed environment variable: the variable, and what it takes."""
