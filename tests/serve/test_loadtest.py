"""The load test against the app served by uvicorn on 127.0.0.1: it sends exactly what it is told,
counts every answer, and targets nothing but loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matchrcnn.serve.loadtest import main, run_load


def test_a_bounded_run_measures_every_request(live_url: str, user_photo: Path) -> None:
    result = run_load(live_url, user_photo, clients=3, requests=7, warmup=1,
                      fields={"min_score": "0", "topk": "3", "max_items": "2"})
    assert (result.clients, result.requests, result.errors) == (3, 7, 0)
    assert result.statuses == {200: 7}
    assert 0 < result.p50_ms <= result.p95_ms <= result.max_ms <= result.seconds * 1000
    assert result.requests_per_second == pytest.approx(7 / result.seconds, rel=0.01)


def test_refused_requests_are_counted_as_errors(live_url: str, tmp_path: Path) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo")
    out = tmp_path / "load.json"
    assert main(["--url", live_url, "--image", str(notes), "--clients", "2", "--requests", "4",
                 "--warmup", "0", "--out", str(out)]) == 1
    written = json.loads(out.read_text())
    assert written["requests"] == written["errors"] == 4
    assert written["statuses"] == {"415": 4}


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "http://192.168.1.2", "http://0.0.0.0:80",
                                 "http://example.com", "no-scheme"])
def test_only_loopback_is_a_target(url: str, user_photo: Path) -> None:
    with pytest.raises(ValueError, match="only targets loopback"):
        run_load(url, user_photo, clients=1, requests=1)
