"""The full-scale memory benchmark, run for real at a tiny scale: every figure it reports."""

from __future__ import annotations

import json
from pathlib import Path

from matchrcnn.benchmarks.scale import main


def test_scale_benchmark_measures_records_workers_and_evaluation(tmp_path: Path, capsys):
    out = tmp_path / "figures.json"
    assert main(["--train-images", "300", "--train-items", "480", "--val-images", "60",
                 "--val-items", "98", "--detections", "5", "--workers", "2",
                 "--work-dir", str(tmp_path), "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    records = figures["records"]
    assert (records["images"], records["items"], records["touched_items"]) == (300, 480, 480)
    assert len(records["worker_pss_mib"]) == 2 and all(v > 0 for v in records["worker_pss_mib"])
    assert records["total_pss_mib"] >= records["main_pss_mib"] > 0
    assert records["peak_rss_mib"] >= records["baseline_peak_rss_mib"] > 0
    evaluation = figures["evaluation"]
    assert (evaluation["images"], evaluation["items"], evaluation["detections"]) == (60, 98, 300)
    assert 0.0 <= evaluation["bbox_AP"] <= 1.0 and 0.0 <= evaluation["retrieval_top20"] <= 1.0
    assert evaluation["peak_rss_mib"] >= evaluation["baseline_peak_rss_mib"] > 0
    assert json.loads(capsys.readouterr().out) == figures
    assert list(tmp_path.iterdir()) == [out], "the generated splits are removed"
