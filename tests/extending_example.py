"""The worked example of docs/extending.md, loaded from the page itself, registered for a test."""

from __future__ import annotations

import re
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from matchrcnn.modeling.branch import BRANCHES

PAGE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


@contextmanager
def occlusion_branch() -> Iterator[type]:
    """Run the page's python block (which registers OcclusionBranch); unregister it after."""
    code = re.search(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL).group(1)
    module = types.ModuleType("extending_example")
    exec(compile(code, str(PAGE), "exec"), module.__dict__)
    try:
        yield module.OcclusionBranch
    finally:
        BRANCHES.pop(module.OcclusionBranch.name)
