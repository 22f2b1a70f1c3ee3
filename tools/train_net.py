#!/usr/bin/env python3
"""Train or evaluate Match R-CNN, in detectron2's command-line shape.

  tools/train_net.py --config-file configs/synthetic/quickstart.yaml
  tools/train_net.py --config-file C --num-gpus 8 SOLVER.IMS_PER_BATCH 16
  torchrun --nproc-per-node 8 tools/train_net.py --config-file C        (also multi-node)
  tools/train_net.py --config-file C --resume                            (continue a killed run)
  tools/train_net.py --config-file C --eval-only MODEL.WEIGHTS output/model_final.pth

Trailing KEY VALUE pairs override the config; the merged config is saved as OUTPUT_DIR/config.yaml.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from matchrcnn.config import ConfigError, setup_cfg
from matchrcnn.engine.checkpoint import Checkpointer
from matchrcnn.engine.evaluation import evaluate_model, print_results
from matchrcnn.engine.launch import ProcessInfo, launch, process_device
from matchrcnn.engine.trainer import (
    NonFiniteLossError,
    Trainer,
    images_per_process,
    seed_everything,
)
from matchrcnn.modeling import WeightsError, build_model, load_model_weights

logger = logging.getLogger("matchrcnn")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint in OUTPUT_DIR")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes to spawn (one per GPU)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, process: ProcessInfo) -> dict | None:
    cfg = setup_cfg(args.config_file, args.opts)
    logging.basicConfig(level=logging.INFO if process.rank == 0 else logging.WARNING,
                        format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    device = process_device(cfg.MODEL.DEVICE, process)
    seed_everything(cfg.SEED + process.rank)
    resumed = args.resume and Checkpointer(cfg.OUTPUT_DIR, None).last_checkpoint() is not None
    # Weights that a checkpoint or MODEL.WEIGHTS replaces are not downloaded (ImageNet's).
    model = build_model(cfg, backbone_weights=not (args.eval_only or resumed
                                                   or cfg.MODEL.WEIGHTS)).to(device)

    if args.eval_only:
        weights = (Checkpointer(cfg.OUTPUT_DIR, model).last_checkpoint() if args.resume
                   else cfg.MODEL.WEIGHTS)
        if not weights:
            raise ConfigError("--eval-only needs MODEL.WEIGHTS (or --resume with a checkpoint "
                              "in OUTPUT_DIR)")
        load_model_weights(model, weights, "--resume" if args.resume else "MODEL.WEIGHTS")
        results = evaluate_model(cfg, model)
        if process.rank == 0:
            print_results(results)
        return results

    if cfg.MODEL.WEIGHTS and not resumed:
        # A checkpoint of this model, or COCO / ImageNet weights where they fit (a table says).
        load_model_weights(model, cfg.MODEL.WEIGHTS, foreign=True)
    trainer = Trainer(cfg, model, resume=args.resume, rank=process.rank,
                      world_size=process.world_size,
                      evaluate=lambda m, iteration: evaluate_model(cfg, m, iteration))
    results = trainer.train()
    if results and process.rank == 0:
        print_results(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = setup_cfg(args.config_file, args.opts)
        if not args.eval_only:
            images_per_process(cfg, int(os.environ.get("WORLD_SIZE", args.num_gpus)))
        device_type = process_device(cfg.MODEL.DEVICE, ProcessInfo()).type
        launch(run, args.num_gpus, args=(args,), device_type=device_type)
    except (ConfigError, WeightsError, NonFiniteLossError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
