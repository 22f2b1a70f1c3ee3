"""Planning a synthetic dataset and writing its files, from a seed.

The dataset is a pure function of (num_images, size, seed): the plan (pair groups, splits, which
garments go in which photo) comes from one random stream, and every image is drawn from a stream
keyed by (seed, split, index), so any number of worker processes writes the same bytes.

Pair groups: each pair_id has one or two styles (garments), one to three user photos that show
them among style-0 distractors, and one or two shop photos of a single garment each. Whole groups
go to one split, about 80% of the images to train and 20% to validation.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from matchrcnn.data.categories import NUM_CATEGORIES
from matchrcnn.data.synthetic.render import ImageSpec, ItemSpec, encode_jpeg, render_image
from matchrcnn.utils.atomic import write_bytes_atomic

SPLITS = ("train", "validation")
VALIDATION_SHARE = 0.2
MIN_IMAGES = 4
MIN_SIZE = 64
MAX_ITEMS_PER_USER_IMAGE = 4

_PLAN_STREAM = 301
_FILE_NAME = re.compile(r"^\d{6}\.(jpg|json)$")


def plan_dataset(num_images: int, size: int = 320, seed: int = 0) -> dict[str, list[ImageSpec]]:
    """Every image of both splits, in file order, without drawing anything."""
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < MIN_IMAGES:
        raise ValueError(f"num_images must be an int >= {MIN_IMAGES} (one pair group per split), "
                         f"got {num_images!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
        raise ValueError(f"size must be an int >= {MIN_SIZE} pixels, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    rng = np.random.default_rng([seed, _PLAN_STREAM])
    groups = _group_sizes(rng, num_images)
    validation = _validation_groups(rng, groups, num_images)
    entries: dict[str, list[tuple]] = {split: [] for split in SPLITS}
    for pair_id, (users, shops) in enumerate(groups, start=1):
        split = "validation" if pair_id - 1 in validation else "train"
        entries[split].extend(_group_images(rng, pair_id, users, shops, size))
    plan = {}
    for split in SPLITS:
        order = rng.permutation(len(entries[split]))
        plan[split] = [
            ImageSpec(split, index, *entries[split][position])
            for index, position in enumerate(order.tolist(), start=1)
        ]
    return plan


def _group_sizes(rng: np.random.Generator, num_images: int) -> list[tuple[int, int]]:
    """(user images, shop images) per pair group, summing to num_images, at least two groups."""
    largest = min(5, num_images - 2)
    groups = []
    remaining = num_images
    while remaining > 0:
        users, shops = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        total = min(users + shops, largest, remaining)
        if remaining - total == 1:
            total += 1 if total < largest else -1
        shops = min(shops, total - 1)
        users = total - shops
        if users > 3:
            shops, users = shops + users - 3, 3
        groups.append((users, shops))
        remaining -= total
    return groups


def _validation_groups(rng: np.random.Generator, groups: list[tuple[int, int]],
                       num_images: int) -> set[int]:
    target = max(1, round(VALIDATION_SHARE * num_images))
    chosen: set[int] = set()
    count = 0
    for group in rng.permutation(len(groups)).tolist():
        if count >= target or len(chosen) == len(groups) - 1:
            break
        chosen.add(group)
        count += sum(groups[group])
    return chosen


def _group_images(rng: np.random.Generator, pair_id: int, users: int, shops: int,
                  size: int) -> list[tuple]:
    """The group's photos as ImageSpec fields after (split, index).

    Style 1 is in the first user photo and style 2 (when there is one) in the last, so every
    garment a shop photo shows is also worn in some user photo.
    """
    num_styles = 2 if rng.random() < 0.3 else 1
    categories = [int(c) for c in rng.integers(1, NUM_CATEGORIES + 1, size=num_styles)]
    images = []
    user_sizes = ((size, round(size * 0.75)), (round(size * 0.75), size), (size, size))
    for number in range(users):
        styles = {1} if number == 0 else set()
        if num_styles == 2 and number == users - 1:
            styles.add(2)
        styles |= {s for s in range(1, num_styles + 1) if rng.random() < 0.4}
        styles = styles or {int(rng.integers(1, num_styles + 1))}
        total = int(rng.integers(len(styles), MAX_ITEMS_PER_USER_IMAGE + 1))
        items = [ItemSpec(categories[s - 1], s) for s in sorted(styles)]
        items += [ItemSpec(int(rng.integers(1, NUM_CATEGORIES + 1)), 0)
                  for _ in range(total - len(styles))]
        width, height = user_sizes[int(rng.choice(3, p=[0.4, 0.4, 0.2]))]
        images.append((width, height, "user", pair_id, tuple(items)))
    for number in range(shops):
        style = number % num_styles + 1
        images.append((size, size, "shop", pair_id, (ItemSpec(categories[style - 1], style),)))
    return images


def generate_dataset(out_dir: str | os.PathLike, num_images: int, size: int = 320,
                     seed: int = 0, workers: int | None = None) -> dict:
    """Write ``out_dir/{train,validation}/{image,annos}/NNNNNN.{jpg,json}`` and summarise them.

    ``workers`` processes draw the images (default: all cores; 1 draws in this process); the
    files do not depend on it. Six-digit files left in those folders by an earlier, larger run
    are removed, so the folders hold exactly this dataset. Returns per split the counts of
    images, user and shop images, items and pair groups, plus ``files`` (paths written) and
    ``removed`` (stale paths deleted).
    """
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    plan = plan_dataset(num_images, size, seed)
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root}: output path exists and is not a directory")
    for split in SPLITS:
        for folder in ("image", "annos"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
    jobs = [(spec, seed, str(root)) for split in SPLITS for spec in plan[split]]
    if workers == 1:
        results = [_write_image(job) for job in jobs]
    else:
        chunk = max(1, len(jobs) // (workers * 8))
        with ProcessPoolExecutor(workers, _worker_context(), initializer=_init_worker) as pool:
            results = list(pool.map(_write_image, jobs, chunksize=chunk))
    files = [path for result in results for path in result[1]]
    summary: dict = {}
    for split in SPLITS:
        specs = plan[split]
        summary[split] = {
            "images": len(specs),
            "user_images": sum(spec.source == "user" for spec in specs),
            "shop_images": sum(spec.source == "shop" for spec in specs),
            "items": sum(count for (spec, _, _), (count, _) in zip(jobs, results, strict=True)
                         if spec.split == split),
            "pair_groups": len({spec.pair_id for spec in specs}),
        }
    summary["files"] = files
    summary["removed"] = _remove_stale(root, set(files))
    return summary


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a clean server process that has imported this module once.

    Forking the caller directly can deadlock once it has run OpenCV's or torch's thread pools
    (seen in tests); spawning re-imports torch in every worker, which costs seconds each.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _init_worker() -> None:
    """One OpenCV thread per worker process: the pool already uses the cores."""
    cv2.setNumThreads(1)


def _write_image(job: tuple[ImageSpec, int, str]) -> tuple[int, list[str]]:
    spec, seed, root = job
    image, annotation = render_image(spec, seed)
    split_dir = Path(root) / spec.split
    image_path = split_dir / "image" / f"{spec.index:06d}.jpg"
    annos_path = split_dir / "annos" / f"{spec.index:06d}.json"
    write_bytes_atomic(image_path, encode_jpeg(image), fsync=False)
    write_bytes_atomic(annos_path, json.dumps(annotation).encode("utf-8"), fsync=False)
    items = sum(key.startswith("item") for key in annotation)
    return items, [str(image_path), str(annos_path)]


def _remove_stale(root: Path, written: set[str]) -> list[str]:
    removed = []
    for split in SPLITS:
        for folder in ("image", "annos"):
            for path in sorted((root / split / folder).iterdir()):
                if _FILE_NAME.match(path.name) and str(path) not in written:
                    path.unlink()
                    removed.append(str(path))
    return removed
