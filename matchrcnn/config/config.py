"""A run's configuration: defaults, then a YAML file (with ``_BASE_``), then KEY VALUE pairs.

fvcore's CfgNode does the merging; this module turns its assertion and key errors into messages
that name the file or command-line pair at fault, and writes the result next to a run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import yaml
from fvcore.common.config import CfgNode

from matchrcnn.config.defaults import _C
from matchrcnn.utils.atomic import write_text_atomic

CONFIG_FILE_NAME = "config.yaml"


class ConfigError(ValueError):
    """A config file or override that cannot be applied; the message says where and why."""


def get_cfg() -> CfgNode:
    """A fresh, mutable copy of the defaults, with the keys of every registered RoI branch."""
    from matchrcnn.modeling.branch import TORCHVISION_POOLERS, add_branch_configs

    cfg = _C.clone()
    add_branch_configs(cfg, TORCHVISION_POOLERS)
    return cfg


def merge_file(cfg: CfgNode, config_file: str | os.PathLike) -> None:
    """Merge one YAML file (and its ``_BASE_`` chain) into ``cfg``; clear errors for bad files."""
    path = Path(config_file)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        cfg.merge_from_file(str(path))
    except KeyError as error:
        raise ConfigError(f"{path}: unknown config key ({_reason(error)})") from error
    except (ValueError, AssertionError, TypeError) as error:
        raise ConfigError(f"{path}: {_reason(error)}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    except OSError as error:
        raise ConfigError(f"{path}: cannot read a file it names as _BASE_: {error}") from error


def merge_overrides(cfg: CfgNode, opts: Sequence[str]) -> None:
    """Merge command-line ``KEY VALUE`` pairs; values are parsed as Python literals."""
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(
            f"command-line overrides must come in KEY VALUE pairs; {opts[-1]!r} has no value"
        )
    for key, value in zip(opts[0::2], opts[1::2], strict=True):
        try:
            cfg.merge_from_list([key, value])
        except (KeyError, AssertionError) as error:
            raise ConfigError(f"command-line override {key}: unknown config key") from error
        except ValueError as error:
            raise ConfigError(f"command-line override {key} {value}: {_reason(error)}") from error


def setup_cfg(config_file: str | os.PathLike | None, opts: Sequence[str] = ()) -> CfgNode:
    """Defaults, then ``config_file`` (if any), then ``opts``; returned frozen."""
    cfg = get_cfg()
    if config_file:
        merge_file(cfg, config_file)
    merge_overrides(cfg, opts)
    cfg.freeze()
    return cfg


def save_cfg(cfg: CfgNode, output_dir: str | os.PathLike) -> Path:
    """Write ``cfg`` as ``<output_dir>/config.yaml`` (atomically) so a run can be reproduced."""
    target = Path(output_dir) / CONFIG_FILE_NAME
    write_text_atomic(target, cfg.dump())
    return target


def _reason(error: Exception) -> str:
    return str(error.args[0]) if error.args else type(error).__name__
