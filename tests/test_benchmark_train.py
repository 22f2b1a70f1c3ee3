"""tools/benchmark.py --what train, tiny: both models measured, AMP refused on CPU."""

from __future__ import annotations

import json

from matchrcnn.benchmarks import train as train_benchmark
from matchrcnn.config import get_cfg, merge_file, merge_overrides
from matchrcnn.data.categories import NUM_LANDMARKS
from matchrcnn.modeling import build_model, check_targets

TINY = ["--size", "96", "--warmup", "1", "--iterations", "1", "--batch-sizes", "2",
        "--device", "cpu", "--threads", "1"]
SMALL_HEADS = ["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50"]


def test_synthetic_batch_has_match_pairs_and_valid_targets():
    images, targets = train_benchmark.synthetic_batch(4, 64, seed=1)
    model = build_model(get_cfg())
    check_targets(images, targets, masks=True, fields=model.roi_heads.target_fields(),
                  num_classes=13)
    assert [bool(t["is_shop"]) for t in targets] == [False, True, False, True]
    user, shop = targets[0], targets[1]
    assert user["pair_ids"].tolist() == shop["pair_ids"].tolist()
    assert user["labels"].tolist() == shop["labels"].tolist()
    assert (user["styles"] > 0).all()
    labelled = (user["keypoints"][..., 2] > 0).sum(dim=1)
    assert (labelled > 0).all() and (labelled < NUM_LANDMARKS).all()


def test_benchmark_measures_both_models(tmp_path, capsys):
    out = tmp_path / "train.json"
    assert train_benchmark.main([*TINY, "--json", str(out), *SMALL_HEADS],
                                 prog="benchmark") == 0
    printed = capsys.readouterr().out
    assert "command: benchmark --size 96" in printed
    for name in train_benchmark.MODELS.values():
        row = next(line for line in printed.splitlines() if line.startswith(name))
        images_per_second, _, peak_mib = _figures(row, name)
        # On CPU the figure is peak RSS growth past the imports: at 96 px it can round to 0 MiB.
        assert images_per_second > 0 and peak_mib >= 0
    results = json.loads(out.read_text())["results"]
    assert {(r["model"], r["batch"]) for r in results} == {("matchrcnn", 2), ("torchvision", 2)}
    assert all(r["images_per_second"] > 0 and r["peak_mib"] >= 0 for r in results)


def _figures(row: str, name: str) -> tuple[float, float, float]:
    """(images/s, ms/image, peak MiB) of one table row."""
    fields = row[len(name):].split()
    return float(fields[2]), float(fields[3]), float(fields[4])


def test_amp_on_cpu_is_a_clear_error(capsys):
    assert train_benchmark.main(["--device", "cpu", "--amp"], prog="benchmark") == 2
    error = capsys.readouterr().err
    assert "--amp needs a CUDA device" in error and "cpu" in error


def test_torchvision_model_has_our_box_mask_heads_and_poolers():
    cfg = get_cfg()
    merge_file(cfg, str(train_benchmark.DEFAULT_CONFIG))
    merge_overrides(cfg, [
        "MODEL.ROI_HEADS.CANONICAL_BOX_SIZE", "96", "MODEL.ROI_BOX_HEAD.NUM_CONV", "2",
        "MODEL.ROI_BOX_HEAD.CONV_DIM", "32", "MODEL.ROI_BOX_HEAD.NUM_FC", "1",
        "MODEL.ROI_BOX_HEAD.NORM", "GN", "MODEL.ROI_MASK_HEAD.NORM", "GN",
    ])
    theirs = train_benchmark.build_torchvision_model(cfg).roi_heads
    ours = build_model(cfg).roi_heads
    for name in ("box_head", "mask_head"):
        assert repr(getattr(theirs, name)) == repr(getattr(ours, name))
    for name in ("box_roi_pool", "mask_roi_pool", "keypoint_roi_pool"):
        assert getattr(theirs, name).canonical_scale == 96
