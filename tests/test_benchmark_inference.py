"""tools/benchmark.py --what inference --tiny: every run measured, both decoders timed alone."""

from __future__ import annotations

import contextlib
import io
import json
import math

from matchrcnn.benchmarks import inference
from tests.tools.conftest import tool_main

PROG = "tools/benchmark.py --what inference"


def test_the_tiny_benchmark_measures_every_run_and_both_decoders(tmp_path):
    out = tmp_path / "inference.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = tool_main("benchmark")(["--what", "inference", "--device", "cpu", "--tiny",
                                       "--threads", "1", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    command = f"{PROG} --device cpu --tiny --threads 1 --json {out}"
    assert report["command"] == command and f"command: {command}" in printed.getvalue()
    assert report["device_type"] == "cpu" and report["date"][:4].isdigit()
    assert report["image_size"] == [128, 96] and report["detections_per_image"] == 10
    runs = {(row["model"], row["decoder"], row["batch"]) for row in report["results"]}
    assert runs == {(model, decoder, batch) for model, decoder, _ in inference.RUNS
                    for batch in (1, 2)}
    for row in report["results"]:
        assert math.isfinite(row["ms_per_image"]) and row["ms_per_image"] > 0
        assert row["label"] in printed.getvalue()
    decoding = report["decoding"]
    assert decoding["boxes"] == 10 and decoding["maps"] == [39, 56, 56]
    assert list(decoding["ms"]) == ["detected", "32 px", "128 px", "512 px"]
    for timings in decoding["ms"].values():
        assert set(timings) == {"vectorised", "torchvision"}
        assert all(value > 0 for value in timings.values())
    assert "landmark decoding alone, one image: 10 boxes of 39 56x56 maps" in printed.getvalue()


def test_anchors_are_garment_sized():
    assert inference.garment_anchors(256) == "[[64], [96], [128], [192], [256]]"
    assert inference.garment_anchors(2) == "[[1], [1], [1], [2], [2]]"


def test_amp_on_cpu_is_a_clear_error(capsys):
    assert inference.main(["--device", "cpu", "--amp", "--tiny"], prog=PROG) == 2
    assert "--amp needs a CUDA device" in capsys.readouterr().err
