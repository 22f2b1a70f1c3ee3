"""Reading weight files safely (``weights_only``): this model's checkpoints, strictly; foreign
files (torchvision's COCO Mask R-CNN v1/v2 and ImageNet ResNets) where their tensors fit.

A checkpoint of this model (``--resume``, ``--eval-only``, a finished run as MODEL.WEIGHTS) must
fit tensor for tensor: one of another architecture or class count is refused. A foreign file is
recognised by its names, mapped to this model's names, and every tensor whose shape fits is
loaded; a table (as detectron2's checkpointer prints) says which were loaded, which were skipped
for their shape (the 91-class COCO predictors) and which stay at their initialisation (the
landmark and match heads). The backbone must fit whole, so that a ResNet-50 file cannot half-load
into a ResNet-18; a file that fits nothing is refused.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torchvision.models import get_weight
from torchvision.models._api import WeightsEnum

from matchrcnn.modeling.branch import registered_branches

logger = logging.getLogger(__name__)

TORCHVISION_SCHEME = "torchvision://"
"""MODEL.WEIGHTS "torchvision://NAME": torchvision's weights of that name, fetched through its
cache (``torch.hub.get_dir()``), e.g. torchvision://MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1."""
_BODY = "backbone.body."
_COUNTER = "num_batches_tracked"


def own_prefixes() -> tuple[str, ...]:
    """Weight-name prefixes of Match R-CNN's own branches, which no foreign file holds."""
    return tuple(f"roi_heads.{branch.name}_branch." for branch in registered_branches())


class WeightsError(RuntimeError):
    """A weight file that is missing, unreadable, or made for another model."""


@dataclass(frozen=True)
class WeightFormat:
    """A kind of weight file: its name in the table, and a hint when it fits badly."""

    name: str
    hint: str = ""


OWN_FORMAT = WeightFormat("Match R-CNN checkpoint")
TORCHVISION_RESNET = WeightFormat("torchvision ResNet state_dict (ImageNet classifier)")


@dataclass
class LoadReport:
    """What a load did: tensors loaded, skipped for their shape, left at initialisation, unused."""

    origin: str
    format: WeightFormat
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    """Tensors of the file the model has no place for, under the names they map to."""

    def table(self) -> str:
        """detectron2-style summary: one row per group of tensors, counts, names and shapes."""
        rows = [("status", "tensors", "names")]
        rows += [("loaded", str(n), label) for label, n in _by_prefix(self.loaded)]
        rows += [("skipped for shape", "1", f"{name}: {tuple(file)} in the file, {tuple(model)} "
                  "in the model") for name, (file, model) in self.skipped.items()]
        rows += [("left at initialisation", str(n), label) for label, n in _by_module(self.missing)]
        rows += [("not used by the model", str(n), label) for label, n in _by_leaf(self.unused)]
        widths = [max(len(row[i]) for row in rows) for i in range(2)]
        lines = [f"{self.origin}: {self.format.name}"]
        lines += [f"  {a:<{widths[0]}}  {b:>{widths[1]}}  {c}" for a, b, c in rows]
        return "\n".join(lines)


def read_checkpoint(path: str | os.PathLike, key: str) -> object:
    """Whatever ``path`` holds, loaded weights-only: tensors and containers, never code.

    ``key`` is the config key or flag that named the file, so that the message says what to change.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{key} names {path}, which does not exist")
    if path.suffix == ".pkl":
        raise WeightsError(f"{path} ({key}) is a pickle, as detectron2's model zoo ships: load it "
                           "with the detectron2 engine (tools/d2_train_net.py), which reads them")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"{path} ({key}): cannot be read as torch weights: {error}") from error


def model_state(loaded: object, path: str | os.PathLike, key: str) -> Mapping[str, torch.Tensor]:
    """The state_dict in a loaded file: a plain one, or the "model" entry of a checkpoint."""
    if isinstance(loaded, Mapping) and isinstance(loaded.get("model"), Mapping):
        loaded = loaded["model"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise WeightsError(
            f"{path} ({key}): expected a state_dict (names to tensors, as torch.save("
            f"model.state_dict()) writes) or a checkpoint with one under 'model'"
        )
    return loaded


def read_state_dict(path: str | os.PathLike, key: str) -> Mapping[str, torch.Tensor]:
    """A state_dict from ``path``: a plain one, or the "model" entry of a training checkpoint."""
    return model_state(read_checkpoint(path, key), path, key)


def fetch_torchvision_weights(weights: WeightsEnum, key: str, hint: str = "") -> dict:
    """torchvision's state_dict for ``weights``, from its cache or its URL; offline, a message
    saying where to put the file or which local path to give ``key`` instead."""
    try:
        return weights.get_state_dict(progress=False)
    except (OSError, RuntimeError) as error:
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        filename = weights.url.rsplit("/", 1)[-1]
        raise WeightsError(
            f"cannot fetch {weights} from {weights.url}: {error}\n"
            f"Download that file on a machine with internet access and either set {key} to its "
            f"local path (for example {key} /path/to/{filename}) or put it in {cache}{hint}."
        ) from error


def read_weights(spec: str | os.PathLike, key: str) -> tuple[object, str]:
    """What ``spec`` names (a file, or torchvision://NAME) and how the table names its origin."""
    spec = str(spec)
    if not spec.startswith(TORCHVISION_SCHEME):
        return read_checkpoint(spec, key), f"{key} {spec}"
    name = spec[len(TORCHVISION_SCHEME):]
    try:
        weights = get_weight(name)
    except (ValueError, KeyError, AttributeError) as error:
        raise WeightsError(f"{key} {spec}: torchvision has no weights {name!r} (names look like "
                           "MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1)") from error
    return fetch_torchvision_weights(weights, key), f"{key} {spec}"


def mismatch(given: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> str:
    """Why ``given`` cannot load where ``expected`` is the state_dict ("" when it can)."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    misshaped = sorted(
        f"{k} {tuple(given[k].shape)} vs {tuple(expected[k].shape)}"
        for k in set(expected) & set(given)
        if expected[k].shape != given[k].shape
    )
    return "; ".join(
        f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape in file vs model", misshaped),
        )
        if keys
    )


def load_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict``, refusing one of another architecture or class count."""
    problems = mismatch(state_dict, model.state_dict())
    if problems:
        raise WeightsError(
            f"{source} was saved from a different model (another architecture, backbone "
            f"depth, head width or class count) than the config builds: {problems}"
        )
    model.load_state_dict(state_dict)


def recognise(loaded: object, state: Mapping[str, torch.Tensor],
              ) -> tuple[WeightFormat | None, dict[str, str]]:
    """The file's format and, for a foreign one, file name -> model name of every tensor it maps.

    None for this model's own files (a training checkpoint, or one with landmark or match
    heads); a WeightsError for a file this engine cannot read (detectron2's, or unknown).
    """
    if (isinstance(loaded, Mapping) and "iteration" in loaded) or any(
            name.startswith(own_prefixes()) for name in state):
        return None, {}
    if any(name.startswith("backbone.bottom_up.") for name in state):
        raise WeightsError("it holds a detectron2 model (backbone.bottom_up.*): load it with the "
                           "detectron2 engine (tools/d2_train_net.py)")
    if "backbone.body.conv1.weight" in state and any(n.startswith("rpn.head.") for n in state):
        return _torchvision_detection_format(state), {name: name for name in state}
    if "conv1.weight" in state and "layer1.0.conv1.weight" in state:
        return TORCHVISION_RESNET, {
            name: name if name.startswith("fc.") else _BODY + name for name in state
        }
    shown = ", ".join(sorted(state)[:4])
    raise WeightsError(f"it fits nothing this engine reads (this model's checkpoints, torchvision "
                       f"Mask/Faster R-CNN or ResNet state_dicts); its first names: {shown}")


def _torchvision_detection_format(state: Mapping[str, torch.Tensor]) -> WeightFormat:
    kind = ("Mask" if "roi_heads.mask_predictor.mask_fcn_logits.weight" in state else
            "Keypoint" if any(n.startswith("roi_heads.keypoint_") for n in state) else "Faster")
    if "rpn.head.conv.1.0.weight" in state:
        return WeightFormat(
            f"torchvision {kind} R-CNN v2 state_dict ({kind.lower()}rcnn_resnet50_fpn_v2)",
            "configs/deepfashion2/matchrcnn_R50_FPN_v2_coco.yaml builds its architecture: "
            "MODEL.FPN.NORM, ROI_BOX_HEAD.NORM and ROI_MASK_HEAD.NORM 'BN', a 4-conv 1-fc box head "
            "and MODEL.RPN.CONV_DIMS (-1, -1)",
        )
    return WeightFormat(
        f"torchvision {kind} R-CNN v1 state_dict ({kind.lower()}rcnn_resnet50_fpn)",
        "configs/deepfashion2/matchrcnn_R50_FPN_1x.yaml builds its architecture",
    )


def load_model_weights(model: nn.Module, spec: str | os.PathLike, key: str = "MODEL.WEIGHTS",
                       foreign: bool = False) -> LoadReport:
    """Load weights into ``model`` and log what was loaded.

    A file of exactly this model loads whole. Otherwise, with ``foreign`` (starting a training
    run), a recognised foreign file loads where its tensors fit (module doc); without it
    (``--eval-only``, ``--resume``, the Predictor) anything but an exact fit is refused.
    """
    if not foreign and str(spec).startswith(TORCHVISION_SCHEME):
        raise WeightsError(f"{key} {spec}: torchvision's weights can start a training run, not "
                           "stand for a trained model; give a checkpoint of this model")
    loaded, origin = read_weights(spec, key)
    state = model_state(loaded, spec, key)
    expected = model.state_dict()
    problems = mismatch(state, expected)
    if not problems:
        model.load_state_dict(state)
        logger.info("%s: %s, all %d tensors loaded", origin, OWN_FORMAT.name, len(state))
        return LoadReport(origin, OWN_FORMAT, loaded=list(state))
    try:
        file_format, names = recognise(loaded, state)
    except WeightsError as error:
        raise WeightsError(f"{origin}: {error}") from None
    if file_format is None or not foreign:
        what = (f"it is a {file_format.name}, which can start a training run (MODEL.WEIGHTS), "
                "not stand for a trained model; " if file_format else "")
        raise WeightsError(
            f"{origin} was saved from a different model (another architecture, backbone depth, "
            f"head width or class count) than the config builds: {what}{problems}"
        )
    report = _load_fitting(model, state, names, LoadReport(origin, file_format))
    logger.info("%s", report.table())
    misplaced = [name for name in report.unused
                 if not name.endswith(_COUNTER) and not name.startswith("fc.")]
    if misplaced:
        logger.warning("%s: %d of its tensors (%s, ...) have no place in the model the config "
                       "builds; %s", origin, len(misplaced), misplaced[0],
                       file_format.hint or "is it the file's architecture?")
    return report


def _load_fitting(model: nn.Module, state: Mapping[str, torch.Tensor], names: dict[str, str],
                  report: LoadReport) -> LoadReport:
    expected = model.state_dict()
    by_model_name = {names[file_name]: file_name for file_name in state}
    fitting = {}
    for name, tensor in expected.items():
        if name not in by_model_name:
            report.missing.append(name)
            continue
        given = state[by_model_name[name]]
        if given.shape == tensor.shape:
            fitting[name] = given
            report.loaded.append(name)
        else:
            report.skipped[name] = (tuple(given.shape), tuple(tensor.shape))
    report.unused = [names[file_name] for file_name in state if names[file_name] not in expected]
    body = {name: tensor for name, tensor in expected.items() if name.startswith(_BODY)}
    given = {name: state[by_model_name[name]] for name in body if name in by_model_name}
    problems = mismatch(given, body)
    if problems:
        raise WeightsError(
            f"{report.origin}: a {report.format.name}, but it does not fit the backbone "
            f"(another depth or network than MODEL.RESNETS.DEPTH builds?): {problems}"
        )
    model.load_state_dict(fitting, strict=False)
    return report


def _by_prefix(names: list[str]) -> list[tuple[str, int]]:
    """Counts by the first two name parts: ("backbone.body.*", 265), ..."""
    groups: dict[str, int] = {}
    for name in names:
        prefix = ".".join(name.split(".")[:2])
        groups[prefix] = groups.get(prefix, 0) + 1
    return [(f"{prefix}.*", count) for prefix, count in groups.items()]


def _by_module(names: list[str]) -> list[tuple[str, int]]:
    """One label per module: "roi_heads.match_branch.head.fc.{bias,weight}"."""
    groups: dict[str, list[str]] = {}
    for name in names:
        module, _, leaf = name.rpartition(".")
        groups.setdefault(module, []).append(leaf)
    return [(f"{module}.{leaves[0]}" if len(leaves) == 1 else
             f"{module}.{{{','.join(sorted(leaves))}}}", len(leaves))
            for module, leaves in groups.items()]


def _by_leaf(names: list[str]) -> list[tuple[str, int]]:
    """Counts by first two parts and leaf: ("backbone.body.*.num_batches_tracked", 53), ..."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name in names:
        module, _, leaf = name.rpartition(".")
        groups.setdefault((".".join(module.split(".")[:2]), leaf), []).append(name)
    return [(members[0] if len(members) == 1 else f"{prefix}.*.{leaf}", len(members))
            for (prefix, leaf), members in groups.items()]
