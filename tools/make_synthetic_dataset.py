#!/usr/bin/env python3
"""Write a synthetic DeepFashion2 (train and validation, DeepFashion2's layout and schema).

Usage: tools/make_synthetic_dataset.py --out DIR --images N [--size PX] [--seed S] [--workers W]
The files depend only on (N, PX, S), never on W.
"""

from __future__ import annotations

import argparse
import sys
import time

from matchrcnn.data.synthetic import SPLITS, generate_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="dataset root to write")
    parser.add_argument("--images", type=int, required=True,
                        help="total images over both splits (about 80%% train, 20%% validation)")
    parser.add_argument("--size", type=int, default=320, help="longer image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None,
                        help="drawing processes (default: all cores)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        summary = generate_dataset(args.out, args.images, size=args.size, seed=args.seed,
                                   workers=args.workers)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    elapsed = time.perf_counter() - started
    for split in SPLITS:
        counts = summary[split]
        print(f"{split}: {counts['images']} images ({counts['user_images']} user, "
              f"{counts['shop_images']} shop), {counts['items']} items, "
              f"{counts['pair_groups']} pair groups")
    removed = f", removed {len(summary['removed'])} stale files" if summary["removed"] else ""
    print(f"wrote {len(summary['files'])} files under {args.out} in {elapsed:.1f} s{removed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
