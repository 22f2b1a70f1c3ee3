#!/usr/bin/env python3
"""Benchmarks of the project, one per ``--what``; each prints its figures and the command to quote.

Usage: tools/benchmark.py --what {convert,eval,gpu,inference,scale,search,train}
    [options of that benchmark]
``tools/benchmark.py --what NAME --help`` lists a benchmark's own options.
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = ("convert", "eval", "gpu", "inference", "scale", "search", "train")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, add_help=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--what", required=True, choices=BENCHMARKS)
    args, rest = parser.parse_known_args(argv)
    try:
        module = importlib.import_module(f"matchrcnn.benchmarks.{args.what}")
    except ModuleNotFoundError as error:
        if error.name != f"matchrcnn.benchmarks.{args.what}":
            raise
        print(f"benchmark {args.what!r} is not implemented yet", file=sys.stderr)
        return 2
    return module.main(rest, prog=f"tools/benchmark.py --what {args.what}")


if __name__ == "__main__":
    sys.exit(main())
