"""Create the platform's buckets on the S3 store once it answers; buckets that exist are left alone."""

from __future__ import annotations

import os
import sys
import time

from minio import Minio
from urllib3.exceptions import HTTPError

from simplear.store.s3 import minio_client, settings_from_env


def store_client(bucket: str) -> Minio:
    """Client for the store named by SIMPLEAR_S3_ENDPOINT, SIMPLEAR_S3_SECURE and the AWS_* credentials, read as the
    platform reads them (simplear.config.StoreSettings.from_env)."""
    return minio_client(settings_from_env(), f"s3://{bucket}")


def wait_until_up(client: Minio, probe_bucket: str, timeout_s: float) -> None:
    """Retry a cheap request until the store answers, or raise after timeout_s seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.bucket_exists(probe_bucket)
            return
        except (HTTPError, OSError) as error:
            if time.monotonic() > deadline:
                raise TimeoutError(f"store did not answer within {timeout_s:.0f}s: {error}") from error
            print(f"waiting for the store: {error}", flush=True)
            time.sleep(5)


def main(buckets: list[str]) -> int:
    """Create each bucket that does not exist yet."""
    client = store_client(buckets[0])
    wait_until_up(client, buckets[0], float(os.environ.get("STORE_WAIT_SECONDS", "300")))
    for bucket in buckets:
        if client.bucket_exists(bucket):
            print(f"bucket {bucket} exists", flush=True)
        else:
            client.make_bucket(bucket)
            print(f"bucket {bucket} created", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
