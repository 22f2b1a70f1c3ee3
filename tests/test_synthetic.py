"""The synthetic DeepFashion2 generator: layout, schema, determinism, pairs and what is drawn."""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from matchrcnn.data.categories import CATEGORY_NAMES, NUM_CATEGORIES, landmark_count, landmark_slice
from matchrcnn.data.layouts import DEEPFASHION2
from matchrcnn.data.synthetic import generate_dataset, plan_dataset
from matchrcnn.data.synthetic.geometry import clip_polygon, polygon_area
from matchrcnn.data.synthetic.templates import AXIS_X, all_templates, template

ITEM_KEYS = ["category_id", "category_name", "style", "bounding_box", "landmarks",
             "segmentation", "scale", "occlusion", "zoom_in", "viewpoint"]
TOOL = Path(__file__).resolve().parents[1] / "tools" / "make_synthetic_dataset.py"


def load_split(root: Path, split: str) -> dict[int, dict]:
    """Annotation and decoded image of every file of a split, by file number."""
    records = {}
    for path in sorted((root / split / "annos").glob("*.json")):
        number = int(path.stem)
        annotation = json.loads(path.read_text())
        image = cv2.imread(str(root / split / "image" / f"{path.stem}.jpg"))
        records[number] = {"annotation": annotation, "image": image}
    return records


def items_of(annotation: dict) -> list[dict]:
    return [value for key, value in annotation.items() if key.startswith("item")]


def outline_distance(point: np.ndarray, polygon: np.ndarray) -> float:
    """Distance from a point to the closed polyline through the polygon's vertices."""
    starts, ends = polygon, np.roll(polygon, -1, axis=0)
    edges = ends - starts
    lengths = np.maximum((edges**2).sum(axis=1), 1e-12)
    t = np.clip(((point - starts) * edges).sum(axis=1) / lengths, 0, 1)
    return float(np.linalg.norm(starts + t[:, None] * edges - point, axis=1).min())


def segments_cross(p1, p2, q1, q2) -> bool:
    def side(a, b, c):
        return np.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))
    return (side(p1, p2, q1) * side(p1, p2, q2) < 0) and (side(q1, q2, p1) * side(q1, q2, p2) < 0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synthetic")
    summary = generate_dataset(root, 60, size=160, seed=3, workers=1)
    return root, summary


@pytest.fixture(scope="module")
def splits(dataset) -> dict[str, dict[int, dict]]:
    root, _ = dataset
    return {split: load_split(root, split) for split in ("train", "validation")}


def all_items(splits):
    for split, records in splits.items():
        for number, record in records.items():
            for item in items_of(record["annotation"]):
                yield split, number, record, item


def test_templates_are_simple_polygons_with_the_categories_landmark_counts():
    templates = all_templates()
    assert [t.category_id for t in templates] == list(range(1, NUM_CATEGORIES + 1))
    for tmpl in templates:
        assert tmpl.points.shape == (landmark_count(tmpl.category_id), 2)
        outline = tmpl.points[list(tmpl.outline)]
        assert polygon_area(outline) > 1000
        edges = [(outline[i], outline[(i + 1) % len(outline)]) for i in range(len(outline))]
        for i, j in itertools.combinations(range(len(edges)), 2):
            if j - i > 1 and not (i == 0 and j == len(edges) - 1):
                assert not segments_cross(*edges[i], *edges[j]), (tmpl.category_id, i, j)
        # Every landmark is a vertex of the silhouette or lies on a seam inside it.
        on_seams = {row for seam in tmpl.seams for row in seam}
        assert set(tmpl.outline) | on_seams == set(range(len(tmpl.points)))
        contour = outline.reshape(-1, 1, 2).astype(np.float32)
        for row in on_seams - set(tmpl.outline):
            assert cv2.pointPolygonTest(contour, tuple(map(float, tmpl.points[row])), True) > 0


def test_templates_mirror_onto_themselves_as_the_flip_table_says():
    """The designs name each landmark's mirror by their own structure (the silhouette's left
    half against its right half); it must be the shipped table's pair, and the geometry exact."""
    for tmpl in all_templates():
        slots = landmark_slice(tmpl.category_id)
        table = [DEEPFASHION2.flip_indices[s] - slots.start for s in range(slots.start, slots.stop)]
        assert list(tmpl.mirror) == table, tmpl.category_id
        mirrored = np.column_stack([2 * AXIS_X - tmpl.points[:, 0], tmpl.points[:, 1]])
        np.testing.assert_allclose(mirrored, tmpl.points[list(tmpl.mirror)], atol=1e-9)
        # The silhouette's mirror image is the silhouette walked the other way round.
        walked = [tmpl.mirror[row] for row in tmpl.outline]
        start = walked.index(tmpl.outline[0])
        assert (walked[start::-1] + walked[:start:-1]) == list(tmpl.outline), tmpl.category_id


def test_clip_polygon_keeps_the_part_inside_the_image():
    square = np.array([[-10.0, -10.0], [30.0, -10.0], [30.0, 30.0], [-10.0, 30.0]])
    clipped = clip_polygon(square, 19.0, 49.0)
    assert polygon_area(clipped) == pytest.approx(19.0 * 30.0)
    assert clipped.min() >= 0 and clipped[:, 0].max() <= 19.0
    assert len(clip_polygon(square + 100, 19.0, 49.0)) == 0


def test_layout_and_schema(dataset, splits):
    root, summary = dataset
    total = 0
    for split, records in splits.items():
        images = sorted(p.name for p in (root / split / "image").iterdir())
        annos = sorted(p.name for p in (root / split / "annos").iterdir())
        count = len(images)
        assert count > 0 and summary[split]["images"] == count
        assert images == [f"{n:06d}.jpg" for n in range(1, count + 1)]
        assert annos == [f"{n:06d}.json" for n in range(1, count + 1)]
        total += count
        for record in records.values():
            annotation = record["annotation"]
            keys = list(annotation)
            assert keys[:2] == ["source", "pair_id"]
            assert keys[2:] == [f"item{n}" for n in range(1, len(keys) - 1)]
            assert annotation["source"] in ("user", "shop")
            assert type(annotation["pair_id"]) is int
            height, width = record["image"].shape[:2]
            if annotation["source"] == "shop":
                assert (width, height) == (160, 160)
            else:
                assert max(width, height) == 160 and min(width, height) in (120, 160)
        assert summary[split]["items"] == sum(
            len(items_of(r["annotation"])) for r in records.values())
    assert total == 60
    assert len(summary["files"]) == 120
    for _, _, _, item in all_items(splits):
        assert list(item) == ITEM_KEYS
        assert CATEGORY_NAMES[item["category_id"] - 1] == item["category_name"]
        assert len(item["landmarks"]) == 3 * landmark_count(item["category_id"])
        assert all(type(v) is int for v in item["landmarks"] + item["bounding_box"])
        assert type(item["style"]) is int and item["style"] >= 0
        for key in ("scale", "occlusion", "zoom_in", "viewpoint"):
            assert item[key] in (1, 2, 3)
        for polygon in item["segmentation"]:
            assert len(polygon) >= 6 and len(polygon) % 2 == 0
            assert all(isinstance(v, int) for v in polygon)


def test_boxes_and_polygons_pass_validation_and_are_tight(splits):
    for _, _, record, item in all_items(splits):
        height, width = record["image"].shape[:2]
        x1, y1, x2, y2 = item["bounding_box"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        points = np.concatenate([np.reshape(p, (-1, 2)) for p in item["segmentation"]])
        assert points[:, 0].min() == x1 and points[:, 0].max() == x2
        assert points[:, 1].min() == y1 and points[:, 1].max() == y2
        assert all(polygon_area(np.reshape(p, (-1, 2)).astype(float)) > 0
                   for p in item["segmentation"])


def test_same_seed_same_bytes_whatever_the_workers_and_other_seed_differs(tmp_path):
    one = generate_dataset(tmp_path / "one", 14, size=96, seed=5, workers=1)
    two = generate_dataset(tmp_path / "two", 14, size=96, seed=5, workers=2)
    generate_dataset(tmp_path / "other", 14, size=96, seed=6, workers=1)
    names = [Path(f).relative_to(tmp_path / "one") for f in one["files"]]
    assert names == [Path(f).relative_to(tmp_path / "two") for f in two["files"]]
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    common = [name for name in names if (tmp_path / "other" / name).exists()]
    assert len(common) >= len(names) // 2
    for name in common:
        assert (tmp_path / "other" / name).read_bytes() != (tmp_path / "one" / name).read_bytes()
    assert {k: v for k, v in one.items() if k not in ("files", "removed")} == {
        k: v for k, v in two.items() if k not in ("files", "removed")}


def test_splits_hold_whole_pair_groups_with_users_and_shops(splits):
    sources = {split: defaultdict(lambda: {"user": 0, "shop": 0}) for split in splits}
    for split, records in splits.items():
        for record in records.values():
            annotation = record["annotation"]
            sources[split][annotation["pair_id"]][annotation["source"]] += 1
    assert not set(sources["train"]) & set(sources["validation"])
    for groups in sources.values():
        for counts in groups.values():
            assert 1 <= counts["user"] <= 3 and 1 <= counts["shop"] <= 2
    validation_images = len(splits["validation"])
    assert 0.1 <= validation_images / 60 <= 0.35


def test_shop_garments_are_worn_in_user_photos_and_distractors_exist(splits):
    user_items = defaultdict(set)
    shop_items = []
    distractors = 0
    for _, _, record, item in all_items(splits):
        annotation = record["annotation"]
        key = (annotation["pair_id"], item["style"], item["category_id"])
        if annotation["source"] == "shop":
            shop_items.append(key)
            assert item["style"] > 0 and item["viewpoint"] == 1
            assert len(items_of(annotation)) == 1
        else:
            user_items[annotation["pair_id"]].add(key)
            distractors += item["style"] == 0
            assert item["viewpoint"] in (2, 3)
    assert distractors > 0
    for key in shop_items:
        assert key in user_items[key[0]]


def test_attributes_follow_what_the_annotation_shows(splits):
    levels = defaultdict(set)
    for _, _, record, item in all_items(splits):
        height, width = record["image"].shape[:2]
        landmarks = np.reshape(item["landmarks"], (-1, 3))
        visibility = landmarks[:, 2]
        assert set(visibility.tolist()) <= {0, 1, 2}
        outside = visibility == 0
        assert (landmarks[outside, :2] == 0).all()
        outside_share = outside.mean()
        assert item["zoom_in"] == (1 if outside_share == 0 else 2 if outside_share <= 0.3 else 3)
        labelled = np.count_nonzero(visibility)
        occluded = np.count_nonzero(visibility == 1) / labelled if labelled else 0.0
        assert item["occlusion"] == (1 if occluded < 0.2 else 3 if occluded > 0.5 else 2)
        area = sum(polygon_area(np.reshape(p, (-1, 2)).astype(float))
                   for p in item["segmentation"]) / (width * height)
        assert item["scale"] == (1 if area < 0.1 else 3 if area > 0.4 else 2)
        for key in ("scale", "occlusion", "zoom_in", "viewpoint"):
            levels[key].add(item[key])
    assert levels["scale"] == {1, 2, 3} and levels["zoom_in"] == {1, 2, 3}
    assert len(levels["occlusion"]) >= 2 and levels["viewpoint"] == {1, 2, 3}


def test_labelled_landmarks_lie_in_the_image_on_the_outline_or_a_seam_inside(splits):
    on_outline = inside = 0
    for _, _, record, item in all_items(splits):
        height, width = record["image"].shape[:2]
        polygons = [np.reshape(p, (-1, 2)).astype(float) for p in item["segmentation"]]
        outline_rows = set(template(item["category_id"]).outline)
        for row, (x, y, v) in enumerate(np.reshape(item["landmarks"], (-1, 3))):
            if v == 0:
                continue
            assert 0 <= x < width and 0 <= y < height
            point = np.array([x, y], dtype=float)
            if row in outline_rows:
                assert min(outline_distance(point, p) for p in polygons) <= 1.5
                on_outline += 1
            else:
                depth = max(cv2.pointPolygonTest(p.reshape(-1, 1, 2).astype(np.float32),
                                                 (float(x), float(y)), True) for p in polygons)
                assert depth >= -1.5
                inside += 1
    assert on_outline > 500 and inside > 50


def test_landmark_visibility_follows_the_drawing_order(splits):
    """Items are numbered bottom to top: a later item covering a landmark makes it occluded."""
    explained = 0
    for record in (r for records in splits.values() for r in records.values()):
        items = items_of(record["annotation"])
        for number, item in enumerate(items):
            later = [np.reshape(p, (-1, 1, 2)).astype(np.int32)
                     for above in items[number + 1:] for p in above["segmentation"]]
            for x, y, v in np.reshape(item["landmarks"], (-1, 3)):
                depth = max((cv2.pointPolygonTest(p, (float(x), float(y)), True) for p in later),
                            default=-1.0)
                if v == 2:
                    assert depth < 1.0
                elif v == 1 and depth > 1.0:
                    explained += 1
    assert explained > 0


def test_user_photos_are_cluttered_and_shop_photos_plain(splits):
    spread = defaultdict(list)
    for record in (r for records in splits.values() for r in records.values()):
        gray = cv2.cvtColor(record["image"], cv2.COLOR_BGR2GRAY)
        garments = np.zeros(gray.shape, dtype=np.uint8)
        for item in items_of(record["annotation"]):
            for polygon in item["segmentation"]:
                cv2.fillPoly(garments, [np.reshape(polygon, (-1, 2)).astype(np.int32)], 1)
        spread[record["annotation"]["source"]].append(gray[garments == 0].std())
    assert np.median(spread["user"]) > 5 * np.median(spread["shop"])
    assert max(spread["shop"]) < 5


def item_mean_colour(record: dict, item: dict) -> np.ndarray:
    image = record["image"]
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    for polygon in item["segmentation"]:
        cv2.fillPoly(mask, [np.reshape(polygon, (-1, 2)).astype(np.int32)], 1)
    return image[mask.astype(bool)].astype(float).mean(axis=0)


def test_same_garment_looks_alike_across_photos(splits):
    colours = defaultdict(list)
    for _, _, record, item in all_items(splits):
        if item["style"] > 0:
            key = (record["annotation"]["pair_id"], item["style"])
            colours[key].append(item_mean_colour(record, item))
    same = [np.linalg.norm(a - b) for values in colours.values()
            for a, b in itertools.combinations(values, 2)]
    means = {key: np.mean(values, axis=0) for key, values in colours.items()}
    different = [np.linalg.norm(means[a] - means[b])
                 for a, b in itertools.combinations(means, 2)]
    assert len(same) > 20 and len(different) > 20
    assert np.median(same) < 0.5 * np.median(different)


def test_plan_is_exact_and_rejects_bad_arguments():
    plan = plan_dataset(9, size=64, seed=1)
    assert sum(len(specs) for specs in plan.values()) == 9
    assert all(len(specs) > 0 for specs in plan.values())
    with pytest.raises(ValueError, match="num_images"):
        plan_dataset(3)
    with pytest.raises(ValueError, match="size"):
        plan_dataset(10, size=16)
    with pytest.raises(ValueError, match="seed"):
        plan_dataset(10, seed=-1)
    with pytest.raises(ValueError, match="workers"):
        generate_dataset("/nonexistent-never-written", 10, workers=0)


def test_rerun_with_fewer_images_removes_stale_files(tmp_path):
    generate_dataset(tmp_path, 12, size=64, seed=0, workers=1)
    summary = generate_dataset(tmp_path, 6, size=64, seed=0, workers=1)
    on_disk = sorted(str(p) for p in tmp_path.rglob("*") if re.match(r"\d{6}\.", p.name))
    assert on_disk == sorted(summary["files"])
    assert len(summary["removed"]) == 12
    assert not list(tmp_path.rglob("*.tmp"))


def test_command_line_writes_the_dataset(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_synthetic_dataset", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--out", str(tmp_path), "--images", "8", "--size", "64",
                      "--workers", "1"]) == 0
    output = capsys.readouterr().out
    assert "train:" in output and "validation:" in output and "wrote 16 files" in output
    assert len(list((tmp_path / "train" / "image").glob("*.jpg"))) > 0
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--out", str(tmp_path), "--images", "2"])
    assert exit_info.value.code == 2
    assert "num_images" in capsys.readouterr().err
