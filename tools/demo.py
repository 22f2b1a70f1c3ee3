#!/usr/bin/env python3
"""Draw a trained model's garments on photos or a video, in the shape of detectron2's demo.

  tools/demo.py --config-file C --input photo.jpg [more photos, folders, globs ...]
                [--output OUT] [--confidence-threshold 0.5] [--json] --opts MODEL.WEIGHTS W
  tools/demo.py --config-file C --video-input clip.mp4 [--output OUT.mp4] ... --opts ...

Each detection scoring at least --confidence-threshold is drawn in its category's colour: mask,
box with the category's name and score, landmarks. --input takes image files, folders (every
image under them) and glob patterns ("shots/*.jpg"); --output is a .png file for one image, else
a folder that gets one PNG per image (default output/demo). --video-input writes an MP4 with as
many frames, in order (--output a .mp4 file or a folder). --json also writes the drawn
detections in DeepFashion2's official result formats (results_bbox.json, results_segm.json,
results_landmarks.json, and for images images.json naming each image id) into the output
folder, or beside an output file or a video's MP4, prefixed with its name. Inputs that cannot be
read are reported and skipped, and counted at the end; pictures are written atomically, so
stopping a run keeps every picture it finished. One detection per garment: class-agnostic
suppression is on (--opts TEST.CLASS_AGNOSTIC_NMS.ENABLED False turns it off). Photos are read
upright (EXIF orientation applied).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from matchrcnn.config import setup_cfg
from matchrcnn.inference.defaults import tool_opts
from matchrcnn.inference.demo import Demo, DemoReport, DemoSettings, results_location
from matchrcnn.inference.inputs import (
    PICTURE_SUFFIX,
    VIDEO_SUFFIX,
    expand_inputs,
    is_file_output,
    plan_outputs,
    video_output,
)
from matchrcnn.retrieval.cli import add_max_pixels, run_tool
from matchrcnn.utils.errors import UsageError

DEFAULT_OUTPUT = "output/demo"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE",
                        help="the model's config (e.g. configs/synthetic/quickstart.yaml)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", metavar="PATH",
                        help="image files, folders or glob patterns")
    source.add_argument("--video-input", metavar="FILE", help="a video file")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, metavar="PATH",
                        help=f"a .png ({VIDEO_SUFFIX} for a video) file for one input, else a "
                             f"folder (default {DEFAULT_OUTPUT})")
    parser.add_argument("--confidence-threshold", type=float, default=0.5, metavar="S",
                        help="draw detections scoring at least this (default 0.5)")
    parser.add_argument("--json", action="store_true",
                        help="also write the drawn detections in the official result formats")
    add_max_pixels(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                        help="config overrides, last: MODEL.WEIGHTS FILE [KEY VALUE ...]")
    return parser.parse_args(argv)


def warn(line: str) -> None:
    tqdm.write(f"warning: {line}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    settings = DemoSettings(args.confidence_threshold, args.json, args.max_pixels,
                            progress=not args.no_progress)
    output = Path(args.output)
    cfg = setup_cfg(args.config_file, tool_opts(args.opts))
    if args.video_input:
        video = Path(args.video_input)
        target = video_output(video, output)
        location = results_location(target, is_file=True)
        report = Demo(cfg, settings).run_video(video, target, location)
        print(f"wrote {target}: {report.pictures} frames, {report.detections} detections "
              f"scoring at least {settings.confidence_threshold}")
        _print_results(report)
        return 0
    found, problems = expand_inputs(args.input)
    for problem in problems:
        warn(f"skipped {problem}")
    if not found:
        raise UsageError(f"--input names no image file ({'; '.join(problems)})")
    inputs = plan_outputs(found, output)
    location = results_location(output, is_file_output(output, PICTURE_SUFFIX))
    report = Demo(cfg, settings).run_images(inputs, location, warn)
    where = output if len(inputs) == 1 and is_file_output(output, PICTURE_SUFFIX) else (
        f"{output}/")
    print(f"wrote {report.pictures} picture(s) to {where}: {report.detections} detections scoring "
          f"at least {settings.confidence_threshold}; {len(problems) + len(report.skipped)} "
          f"inputs skipped")
    _print_results(report)
    return 0


def _print_results(report: DemoReport) -> None:
    for kind, path in report.results.items():
        print(f"{kind}: {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
