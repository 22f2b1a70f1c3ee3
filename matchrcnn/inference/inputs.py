"""What the demo's ``--input`` names, and where the picture of each input goes.

Each ``--input`` is an image file, a folder (every image file under it, by suffix, recursively)
or a glob pattern (``photos/*.jpg``, ``shots/**/*.png``). A name that is none of these is kept
as a problem to report, not an error: the other inputs still run. Pictures are PNG files: one
input may be written to a file ``--output`` names (``.png``); otherwise ``--output`` is a folder
that receives ``<name>.png`` per input, keeping the layout of an input folder below it, so that
two photos of the same name in different sub-folders never overwrite each other.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from matchrcnn.data.images import list_images
from matchrcnn.utils.errors import UsageError

PICTURE_SUFFIX = ".png"
VIDEO_SUFFIX = ".mp4"
GLOB_MARKS = "*?["


@dataclass(frozen=True)
class DemoInput:
    """An image to run: its path, the picture to write, and its image id in the results files."""

    path: Path
    output: Path
    image_id: int


def expand_inputs(patterns: list[str]) -> tuple[list[tuple[Path, Path | None]], list[str]]:
    """The image files the patterns name, each with the folder it was found under (None for a
    file named directly or by a glob), in order and each once; and one problem line per pattern
    that names nothing."""
    found: list[tuple[Path, Path | None]] = []
    problems: list[str] = []
    seen: set[Path] = set()

    def add(path: Path, folder: Path | None) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append((path, folder))

    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            images = list_images(path)
            if not images:
                problems.append(f"{pattern}: the folder holds no image files")
            for image in images:
                add(image, path)
        elif path.exists():
            add(path, None)
        elif any(mark in pattern for mark in GLOB_MARKS):
            matches = sorted(Path(match) for match in glob.glob(pattern, recursive=True))
            files = [match for match in matches if match.is_file()]
            if not files:
                problems.append(f"{pattern}: matches no file")
            for match in files:
                add(match, None)
        else:
            problems.append(f"{pattern}: no such file or folder")
    return found, problems


def is_file_output(output: Path, suffix: str) -> bool:
    """Whether ``--output`` names one file (it ends in ``suffix``) rather than a folder; another
    file suffix is refused, as a folder of that name would surprise."""
    if output.suffix.lower() == suffix:
        return True
    if output.suffix and not output.is_dir():
        raise UsageError(f"--output {output}: a file output must end in {suffix}; give a folder "
                         f"(without a suffix) for one {suffix} file per input")
    return False


def plan_outputs(found: list[tuple[Path, Path | None]], output: Path) -> list[DemoInput]:
    """Where each found image's picture goes, and its image id: the number of a DeepFashion2-style
    name (000123.jpg is 123) when every input has one and they differ, else its position from 1.
    Refuses a file output for several inputs, and two inputs that would write one picture."""
    if is_file_output(output, PICTURE_SUFFIX):
        if len(found) > 1:
            raise UsageError(f"--output {output} is one file but the inputs name {len(found)} "
                             f"images: give a folder")
        targets = [output for _ in found]
    else:
        targets = [output / (path.relative_to(folder) if folder is not None else Path(path.name))
                   .with_suffix(PICTURE_SUFFIX) for path, folder in found]
    clash = _first_repeat(targets)
    if clash is not None:
        sources = [str(path) for (path, _), target in zip(found, targets, strict=True)
                   if target == clash]
        raise UsageError(f"inputs {' and '.join(sources[:2])} would both be written to {clash}: "
                         f"run them into different --output folders")
    for (path, _), target in zip(found, targets, strict=True):
        if target.resolve() == path.resolve():
            raise UsageError(f"--output {target} would overwrite its input")
    return [DemoInput(path, target, image_id)
            for (path, _), target, image_id in zip(found, targets, image_ids(found), strict=True)]


def image_ids(found: list[tuple[Path, Path | None]]) -> list[int]:
    """Each input's image id (see ``plan_outputs``)."""
    stems = [path.stem for path, _ in found]
    if all(stem.isdigit() for stem in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(stem) for stem in stems]
    return list(range(1, len(found) + 1))


def video_output(video: Path, output: Path) -> Path:
    """The MP4 a video's frames go to: ``--output`` itself, or ``<folder>/<name>.mp4``."""
    target = output if is_file_output(output, VIDEO_SUFFIX) else (
        output / video.with_suffix(VIDEO_SUFFIX).name)
    if os.path.abspath(target) == os.path.abspath(video):
        raise UsageError(f"--output {target} would overwrite its input")
    return target


def _first_repeat(paths: list[Path]) -> Path | None:
    seen: set[Path] = set()
    for path in paths:
        if path in seen:
            return path
        seen.add(path)
    return None
