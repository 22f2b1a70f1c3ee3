"""A bounded load test of a running service, on this machine only.

  python -m matchrcnn.serve.loadtest --url http://127.0.0.1:8000 --image PHOTO
                                     [--clients 4] [--requests 100] [--warmup 2] [--out FILE]

``--clients`` threads, each with its own HTTP connection, send ``--requests`` searches of the
same photo in all (after ``--warmup`` unmeasured ones), then it stops and reports requests per
second, latency percentiles and every answer that was not a 200 with a search result. Only
loopback addresses are accepted as targets.
"""

from __future__ import annotations

import argparse
import itertools
import json
import mimetypes
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx2 as httpx
import numpy as np

from matchrcnn.serve.access import TOKEN_ENV, is_loopback
from matchrcnn.utils.atomic import write_text_atomic


@dataclass(frozen=True)
class LoadResult:
    """What one run measured; latencies in milliseconds, ``statuses`` counts answers by HTTP
    status (0: no answer)."""

    clients: int
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    max_ms: float
    statuses: dict[int, int]


def check_target(url: str) -> None:
    """Refuse any target but this machine's loopback."""
    host = urlsplit(url).hostname
    if host is None or not is_loopback(host):
        raise ValueError(f"{url}: the load test only targets loopback addresses "
                         f"(127.0.0.1, localhost, [::1])")


def run_load(url: str, photo: str | os.PathLike, clients: int = 4, requests: int = 100,
             warmup: int = 2, fields: dict[str, str] | None = None, token: str | None = None,
             timeout: float = 300.0) -> LoadResult:
    """Send ``requests`` searches of ``photo`` from ``clients`` concurrent clients (see the
    module notes); each request is bounded by ``timeout`` seconds."""
    check_target(url)
    for name, value in (("clients", clients), ("requests", requests)):
        if value < 1:
            raise ValueError(f"--{name} must be at least 1, got {value}")
    photo = Path(photo)
    upload = (photo.name, photo.read_bytes(),
              mimetypes.guess_type(photo.name)[0] or "application/octet-stream")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    fields = fields or {}

    def send(http: httpx.Client) -> tuple[int, float]:
        start = time.perf_counter()
        try:
            response = http.post("/api/search", files={"image": upload}, data=fields)
            status = response.status_code
            if status == 200 and "items" not in response.json():
                status = -1
        except (httpx.HTTPError, ValueError):
            status = 0
        return status, time.perf_counter() - start

    with httpx.Client(base_url=url, timeout=timeout, headers=headers) as http:
        for _ in range(warmup):
            send(http)
    numbers = itertools.count()
    lock = threading.Lock()
    outcomes: list[tuple[int, float]] = []

    def client() -> None:
        with httpx.Client(base_url=url, timeout=timeout, headers=headers) as http:
            while True:
                with lock:
                    if next(numbers) >= requests:
                        return
                outcome = send(http)
                with lock:
                    outcomes.append(outcome)

    threads = [threading.Thread(target=client, name=f"client-{n}") for n in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    latencies = np.array([latency for _, latency in outcomes]) * 1000
    statuses: dict[int, int] = {}
    for status, _ in outcomes:
        statuses[status] = statuses.get(status, 0) + 1
    p50, p95 = np.percentile(latencies, [50, 95])
    return LoadResult(clients, len(outcomes), len(outcomes) - statuses.get(200, 0),
                      round(seconds, 3), round(len(outcomes) / seconds, 3), round(float(p50), 1),
                      round(float(p95), 1), round(float(latencies.max()), 1), statuses)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--image", required=True, metavar="PHOTO")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=100, help="measured requests in all")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured requests first")
    parser.add_argument("--topk", type=int, default=20)
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--max-items", type=int, default=10)
    parser.add_argument("--same-category", action="store_true")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV))
    parser.add_argument("--out", metavar="FILE.json", help="also write the result here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fields = {"topk": str(args.topk), "min_score": str(args.min_score),
              "max_items": str(args.max_items), "same_category": str(args.same_category)}
    try:
        result = run_load(args.url, args.image, args.clients, args.requests, args.warmup, fields,
                          args.token)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    text = json.dumps(asdict(result), indent=2)
    print(text)
    if args.out:
        write_text_atomic(args.out, text + "\n")
    return 0 if result.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
