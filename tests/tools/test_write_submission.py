"""tools/write_submission.py on a synthetic split written without annotations: the four official
files, in the official formats, scored by tools/eval_retrieval.py against the ground truth that
was kept aside; and what it refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matchrcnn.config import setup_cfg
from matchrcnn.data.catalog import (
    DatasetCatalog,
    ImageInfoFiles,
    MetadataCatalog,
    register_image_info_split,
)
from matchrcnn.data.categories import landmark_slice
from matchrcnn.data.image_info import write_image_info
from matchrcnn.evaluation.results import load_coco_results, read_retrieval_results
from matchrcnn.inference.submission import RESULT_FILES
from matchrcnn.retrieval.model import RetrievalModel
from tests.modeling.conftest import TINY
from tests.tools.conftest import CONFIG, SPLIT, model_args, tool_main

submit_main = tool_main("write_submission")
eval_main = tool_main("eval_retrieval")
UNANNOTATED = "synthetic_validation_unannotated"
BROKEN = "synthetic_validation_one_broken"


def unannotated_copy(records: list[dict], root: Path, name: str) -> ImageInfoFiles:
    """The split's images and the three image-information files (no annotations, no pair ids),
    registered as ``name``."""
    files = ImageInfoFiles("copy", "test", "test", root=root)
    write_image_info(records, files.info_dir, "test")
    files.image_root.mkdir(parents=True)
    for record in records:
        shutil.copy(record["file_name"], files.image_root)
    register_image_info_split(name, files)
    return files


@pytest.fixture(scope="module")
def split(datasets_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The annotated validation split's records, with $MATCHRCNN_DATASETS set for the module,
    and its unannotated copy registered as UNANNOTATED."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MATCHRCNN_DATASETS", str(datasets_root))
        records = list(DatasetCatalog.get(SPLIT))
        unannotated_copy(records, tmp_path_factory.mktemp("unannotated"), UNANNOTATED)
        yield records


def submit(weights: Path, name: str, out: Path, *extra: str) -> int:
    return submit_main(["--config-file", str(CONFIG), "--split", name, "--output-dir", str(out),
                        "--min-score", "0", "--no-progress", *extra, "MODEL.WEIGHTS",
                        str(weights), *TINY])


@pytest.fixture(scope="module")
def submission(split: list[dict], weights: Path, tmp_path_factory: pytest.TempPathFactory,
               ) -> Path:
    out = tmp_path_factory.mktemp("submission")
    assert submit(weights, UNANNOTATED, out) == 0
    return out


def test_the_unannotated_copy_has_no_ground_truth(split: list[dict]) -> None:
    copy = DatasetCatalog.get(UNANNOTATED)
    assert [r["image_id"] for r in copy] == [r["image_id"] for r in split]
    assert all(r["annotations"] == [] and "pair_id" not in r for r in copy)
    assert MetadataCatalog.get(UNANNOTATED).annotated is False


def test_four_official_files_and_nothing_else(submission: Path, split: list[dict],
                                              weights: Path) -> None:
    """Every file reads strictly in its official format against the split's ground truth; box,
    mask and landmark entries are the model's detections of every image, in step; landmarks only
    in the detected category's slots."""
    assert sorted(path.name for path in submission.iterdir()) == sorted(RESULT_FILES.values())
    gt = json.loads(Path(MetadataCatalog.get(SPLIT).files.json_file).read_text())
    read = {task: load_coco_results(submission / RESULT_FILES[task], task, gt).entries
            for task in ("bbox", "segm", "landmarks")}
    rows = {task: sorted((e["image_id"], e["category_id"], e["score"]) for e in entries)
            for task, entries in read.items()}
    assert rows["bbox"] == rows["segm"] == rows["landmarks"]
    model = RetrievalModel(setup_cfg(CONFIG, [*TINY, "MODEL.WEIGHTS", str(weights)]))
    images = {r["image_id"]: r for r in split}
    for image_id, record in images.items():
        (expected,) = model.predict([np.asarray(Image.open(record["file_name"]).convert("RGB"))])
        scores = [s for i, _, s in rows["bbox"] if i == image_id]
        assert np.allclose(sorted(scores), sorted(expected["scores"]), atol=1e-5), image_id
    for entry in read["segm"]:
        record = images[entry["image_id"]]
        assert entry["segmentation"]["size"] == [record["height"], record["width"]]
    for entry in read["landmarks"]:
        keypoints = np.asarray(entry["keypoints"]).reshape(294, 3)
        outside = np.ones(294, bool)
        outside[landmark_slice(entry["category_id"])] = False
        assert (keypoints[outside] == 0).all() and keypoints[~outside].any()

    retrieval = read_retrieval_results(str(submission / RESULT_FILES["retrieval"]),
                                       strict=True)
    users = {r["image_id"] for r in split if r["source"] == "user"}
    shops = {r["image_id"] for r in split if r["source"] == "shop"}
    assert set(retrieval.query_image_id.tolist()) == users
    assert set(retrieval.gallery_image_id.ravel().tolist()) <= shops
    assert len(retrieval) == sum(1 for i, _, _ in rows["bbox"] if i in users)


def test_eval_retrieval_scores_the_file_as_its_own_model_mode_does(
        submission: Path, datasets_root: Path, weights: Path, tmp_path: Path, monkeypatch,
        capsys) -> None:
    """Scored against the ground truth kept aside, the retrieval file gives what
    tools/eval_retrieval.py's model mode gives on the annotated split, whose results file holds
    the same entries: detected queries, detected gallery items, the same model."""
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(datasets_root))
    files = MetadataCatalog.get(SPLIT).files
    assert eval_main(["--results", str(submission / RESULT_FILES["retrieval"]), "--query-gt",
                      str(files.query_gt), "--gallery-gt", str(files.gallery_gt),
                      "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    styled = [item for item in json.loads(files.query_gt.read_text()) if item["style"] > 0]
    assert scored["queries"] == len(styled) > 0
    assert eval_main([*model_args(weights), "--split", SPLIT, "--out", str(tmp_path),
                      "--min-score", "0", "--json", "--no-progress", *TINY]) == 0
    assert json.loads(capsys.readouterr().out) == scored
    ours = json.loads((submission / RESULT_FILES["retrieval"]).read_text())
    theirs = json.loads((tmp_path / "retrieval_results.json").read_text())
    assert ours == theirs


def test_an_unreadable_image_is_reported_and_its_items_missed(
        split: list[dict], weights: Path, tmp_path: Path, capsys) -> None:
    files = unannotated_copy(split, tmp_path / "copy", BROKEN)
    user = next(r for r in split if r["source"] == "user")
    broken = files.image_root / Path(user["file_name"]).name
    broken.write_bytes(broken.read_bytes()[:100])
    assert submit(weights, BROKEN, tmp_path / "out") == 0
    captured = capsys.readouterr()
    assert any(str(broken) in line for line in captured.err.splitlines()
               if line.startswith("warning: skipped"))
    assert "1 unreadable" in captured.out
    for kind, name in RESULT_FILES.items():
        entries = json.loads((tmp_path / "out" / name).read_text())
        key = "query_image_id" if kind == "retrieval" else "image_id"
        assert entries and user["image_id"] not in {entry[key] for entry in entries}


@pytest.mark.parametrize(("split_name", "extra", "opts", "message"), [
    ("no_such_split", (), (), "--split no_such_split: not a registered split"),
    ("deepfashion2_test", (), (), "--split deepfashion2_test: dataset 'deepfashion2_test': "),
    (UNANNOTATED, ("--min-score", "1"), (), "no shop image has a detection scoring at least"),
    (UNANNOTATED, (), ("MODEL.MASK_ON", "False"), "MODEL.MASK_ON must be True"),
])
def test_what_cannot_work_ends_in_one_error_line_and_writes_nothing(
        split: list[dict], weights: Path, tmp_path: Path, capsys, split_name: str,
        extra: tuple[str, ...], opts: tuple[str, ...], message: str, monkeypatch) -> None:
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(tmp_path / "empty"))
    out = tmp_path / "out"
    assert submit_main(["--config-file", str(CONFIG), "--split", split_name, "--output-dir",
                        str(out), "--no-progress", *extra, "MODEL.WEIGHTS", str(weights),
                        *TINY, *opts]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert not out.exists() or list(out.iterdir()) == []
