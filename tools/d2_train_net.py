#!/usr/bin/env python3
"""Train or evaluate Match R-CNN with detectron2's DefaultTrainer (needs detectron2 installed).

  tools/d2_train_net.py --config-file configs/d2/synthetic_cpu.yaml
  tools/d2_train_net.py --config-file configs/d2/matchrcnn_R50_FPN_1x.yaml --num-gpus 8
  tools/d2_train_net.py --config-file C --resume             (continue from OUTPUT_DIR)
  tools/d2_train_net.py --config-file C --eval-only MODEL.WEIGHTS output/d2/model_final.pth

detectron2's own command line (default_argument_parser): trailing KEY VALUE pairs override the
config. Datasets resolve under $MATCHRCNN_DATASETS (default ./datasets), as for tools/train_net.py.
"""

from __future__ import annotations

import argparse

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_argument_parser, default_setup, launch

from matchrcnn.d2 import MatchRCNNTrainer, add_matchrcnn_config


def setup(args: argparse.Namespace) -> CfgNode:
    cfg = get_cfg()
    add_matchrcnn_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args: argparse.Namespace) -> dict | None:
    cfg = setup(args)
    if args.eval_only:
        model = MatchRCNNTrainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        return MatchRCNNTrainer.test(cfg, model)
    trainer = MatchRCNNTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    arguments = default_argument_parser(epilog=__doc__).parse_args()
    launch(
        main,
        arguments.num_gpus,
        num_machines=arguments.num_machines,
        machine_rank=arguments.machine_rank,
        dist_url=arguments.dist_url,
        args=(arguments,),
    )
