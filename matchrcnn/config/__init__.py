"""Configuration: detectron2-style keys in a fvcore CfgNode, YAML files with ``_BASE_``."""

from matchrcnn.config.config import (
    CONFIG_FILE_NAME,
    ConfigError,
    get_cfg,
    merge_file,
    merge_overrides,
    save_cfg,
    setup_cfg,
)

__all__ = [
    "CONFIG_FILE_NAME",
    "ConfigError",
    "get_cfg",
    "merge_file",
    "merge_overrides",
    "save_cfg",
    "setup_cfg",
]
