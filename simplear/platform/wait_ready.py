"""Wait until a URL answers 200: how a GRPO trainer pod's init container waits for its rollout server."""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request


def wait_ready(url: str, timeout_s: float, poll_s: float = 2.0) -> bool:
    """Poll url until it answers 200 (True) or timeout_s passes (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=min(5.0, max(timeout_s, 0.1))) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() + poll_s > deadline:
            return False
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 once the URL is ready, 1 with a message when it is not ready in time."""
    parser = argparse.ArgumentParser(prog="python -m simplear.platform.wait_ready")
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, required=True, help="seconds to wait")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between tries")
    args = parser.parse_args(argv)
    if wait_ready(args.url, args.timeout, args.poll):
        print(f"{args.url} is ready", flush=True)
        return 0
    print(f"{args.url} did not answer 200 within {args.timeout:g} s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
