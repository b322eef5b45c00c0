"""Optional extras of the install: a head-only install (`pip install .`) serves REST,
Socket.IO and the progress page; indexing and search need the `pipeline` extra (Ray,
PyMuPDF, torch, sentence-transformers). Features check here first, so a missing extra is a
clear error naming what to install, not an ImportError in the middle of a request."""

from __future__ import annotations

import importlib.util

from core.errors import ExtraMissingError

PIPELINE_EXTRA = "pipeline"
# What the head needs to start or submit a run, and to have a search query embedded (by the
# embed pool, through its run driver).
RUN_MODULES = ("ray",)


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """The top-level modules of `modules` that cannot be imported here (none is imported)."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def require_extra(feature: str, modules: tuple[str, ...], extra: str = PIPELINE_EXTRA) -> None:
    """Raise ExtraMissingError when `feature` cannot work for want of `modules`."""
    missing = missing_modules(modules)
    if missing:
        raise ExtraMissingError(
            f"{feature} needs the '{extra}' extra ({', '.join(missing)} not installed): "
            f"pip install '.[{extra}]' in the indexer's source folder"
        )
