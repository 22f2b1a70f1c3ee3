"""tools/eval_retrieval.py run from a model on a split: gallery, official results file, score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matchrcnn.data.catalog import DatasetCatalog, MetadataCatalog
from matchrcnn.evaluation.results import read_retrieval_results
from matchrcnn.evaluation.retrieval import evaluate_retrieval
from matchrcnn.retrieval import Gallery
from tests.modeling.conftest import TINY
from tests.tools.conftest import SPLIT, model_args, tool_main

eval_main = tool_main("eval_retrieval")


def test_model_mode_builds_the_gallery_writes_and_scores_official_results(
        datasets: Path, weights: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval"
    arguments = [*model_args(weights), "--split", SPLIT, "--out", str(out), "--min-score", "0",
                 "--json", "--no-progress", *TINY]
    assert eval_main(arguments) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert list(printed) == ["top1", "top5", "top10", "top15", "top20", "queries", "missed"]
    records = DatasetCatalog.get(SPLIT)
    shop_ids = {r["image_id"] for r in records if r["source"] == "shop"}
    user_ids = {r["image_id"] for r in records if r["source"] == "user"}
    with Gallery.open(out / "gallery") as gallery:
        assert gallery.image_count == len(shop_ids)
    submission = read_retrieval_results(str(out / "retrieval_results.json"))
    assert len(submission) > 0
    assert set(submission.query_image_id.tolist()) <= user_ids
    assert set(submission.gallery_image_id.ravel().tolist()) <= shop_ids
    files = MetadataCatalog.get(SPLIT).files
    rescored = evaluate_retrieval(str(out / "retrieval_results.json"), files.query_gt,
                                  files.gallery_gt)
    assert rescored.as_dict() == printed
    saved = json.loads((out / "retrieval_accuracy.json").read_text())
    assert {key: saved[key] for key in printed} == printed
    assert saved["detections"] == len(submission)
    assert "(1 indexed now)" in captured.err

    assert eval_main(arguments) == 0  # the gallery is reused, not rebuilt
    captured = capsys.readouterr()
    assert "(0 indexed now)" in captured.err and json.loads(captured.out) == printed


@pytest.mark.parametrize(("arguments", "message"), [
    (["--results", "r.json", "--split", "x"], "not both"),
    (["--config-file", "c.yaml", "--split", "x"], "model mode needs --config-file, --weights"),
    (["--query-gt", "q.json"], "give --results, --query-gt and --gallery-gt"),
])
def test_modes_are_not_mixed(arguments: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        eval_main(arguments)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_split_is_one_clear_error(datasets: Path, weights: Path, tmp_path: Path,
                                          capsys) -> None:
    assert eval_main([*model_args(weights), "--split", "no_such_split", "--out",
                      str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: --split no_such_split: not a registered split (registered: ")
    assert error.count("\n") == 1
