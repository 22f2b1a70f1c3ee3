"""The config the user-facing tools start from, before the user's own overrides.

A shopper expects one detection per garment, but torchvision's NMS is per class, so one garment
can come back several times with different classes. The demo, query, gallery build and serving
tools therefore turn class-agnostic suppression on (TEST.CLASS_AGNOSTIC_NMS.ENABLED); evaluation
and the submission files follow the config (off by default), because COCO AP rewards the
per-class hypotheses it removes (docs/benchmarks.md). The tools merge these pairs after the config
file and before the command-line overrides, so ``TEST.CLASS_AGNOSTIC_NMS.ENABLED False`` on the
command line turns it off again.

The setting changes no embedding of a kept box, and the gallery fingerprint leaves TEST keys out
(retrieval/fingerprint.py), so a gallery built with it on or off serves queries made either way.
"""

from __future__ import annotations

from collections.abc import Sequence

TOOL_OPTS: tuple[str, ...] = ("TEST.CLASS_AGNOSTIC_NMS.ENABLED", "True")
"""KEY VALUE pairs every user-facing tool applies before the user's overrides."""


def tool_opts(opts: Sequence[str]) -> list[str]:
    """The tools' defaults followed by the user's ``KEY VALUE`` overrides (which win)."""
    return [*TOOL_OPTS, *opts]
