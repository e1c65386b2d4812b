"""`helm test`: the store is live and holds both buckets, and the model endpoint (if any) is ready."""

from __future__ import annotations

import os
import sys
import urllib.request

from simplear.store.s3 import minio_client, settings_from_env


def http_ok(url: str) -> bool:
    """Whether GET url answers 200 within ten seconds."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status == 200
    except OSError as error:
        print(f"GET {url}: {error}", flush=True)
        return False


def buckets_exist(buckets: list[str]) -> bool:
    """Whether every bucket exists, asked with the platform's credentials."""
    client = minio_client(settings_from_env(), f"s3://{buckets[0]}")
    missing = [bucket for bucket in buckets if not client.bucket_exists(bucket)]
    if missing:
        print(f"missing buckets: {', '.join(missing)}", flush=True)
    return not missing


def main(buckets: list[str]) -> int:
    """Run each check that applies; exit 1 when any fails."""
    checks = []
    if os.environ.get("MINIO_HEALTH_URL"):
        checks.append(("minio live", http_ok(os.environ["MINIO_HEALTH_URL"])))
    checks.append(("buckets", buckets_exist(buckets)))
    if os.environ.get("MODEL_READY_URL"):
        checks.append(("model ready", http_ok(os.environ["MODEL_READY_URL"])))
    for name, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'} {name}", flush=True)
    return 0 if all(passed for _, passed in checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
