"""What the packages above the runtime add to it, found through package entry points.

The runtime is the base layer: it imports nothing from ``train``, ``export`` or ``calib``
(``tests/test_layering.py`` checks). Where a runtime feature needs code of a layer above, that layer
registers a plug-in in ``pyproject.toml`` and the runtime looks it up by group and name:

- ``edgemark.backends``: a :class:`runtime.backends.BackendEntry` (``train`` adds the PyTorch
  checkpoint backend); its engine module is imported only when a model is loaded.
- ``edgemark.importers``: ``onnx`` makes a third-party ONNX model an artifact with a card
  (``export``'s ``onnx_from_third_party(model, output, card, dynamic_batch)``; the zoo calls it).
"""
from __future__ import annotations

import functools
from importlib import metadata

from runtime.errors import EdgemarkError

BACKENDS_GROUP = "edgemark.backends"
IMPORTERS_GROUP = "edgemark.importers"


@functools.cache
def _entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    return {point.name: point for point in metadata.entry_points(group=group)}


def plugin_names(group: str) -> list[str]:
    """The names registered in ``group`` by the installed packages."""
    return sorted(_entry_points(group))


def load_plugin(group: str, name: str):
    """The object plug-in ``name`` of ``group`` registers (its module imported now).

    Raises:
        EdgemarkError: nothing installed registers it (edgemark not installed with pip, so its entry
            points are unknown), or it fails to import (a missing extra).
    """
    point = _entry_points(group).get(name)
    if point is None:
        raise EdgemarkError(
            f"no '{name}' plug-in in {group}: edgemark's entry points are not installed here; install it with "
            "`pip install -e .` (or `pip install edgemark`) rather than running from a bare source folder"
        )
    try:
        return point.load()
    except ImportError as error:
        raise EdgemarkError(
            f"the '{name}' plug-in ({point.value}) cannot be imported: {error}; install the extra it needs "
            "(see README: Install)"
        ) from None
