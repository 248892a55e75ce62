"""Reproduction recipes: the YAML files in ``train/configs/`` and the expected numbers they carry.

A recipe is an ordinary ``python -m train --config`` file with one extra block, ``recipe:``, that names
it, cites where its settings and numbers come from and gives the expected WFLW test NME per subset
(``null`` where the source gives none). The block is stored in the run's config, so every checkpoint
knows which recipe made it; ``python -m train.eval`` prints the measured WFLW subset table beside the
expected numbers (:func:`comparison_table`). The format is documented in ``train/configs/README.md``.

Torch-free and YAML-free at import: ``--help`` lists the recipes without loading either.
"""
from __future__ import annotations

import math
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from runtime.errors import UsageError, did_you_mean
from runtime.metrics import WFLW_SUBSETS

RECIPES_DIR = Path(__file__).resolve().parent / "configs"
# The WFLW test set the expected numbers are measured on (WFLW_annotations list_98pt_rect_attr_test.txt).
WFLW_TEST_FACES = 2500
RECORD_KEYS = ("name", "title", "source", "expected_nme", "notes", "overridden")


def list_recipes() -> list[str]:
    """Names of the recipes shipped in ``train/configs/`` (file names without ``.yaml``), sorted."""
    return sorted(path.stem for path in RECIPES_DIR.glob("*.yaml"))


def recipe_record(block: Any, origin: str = "recipe") -> dict[str, Any]:
    """Check a ``recipe:`` block and return it as plain values (safe in a ``weights_only`` checkpoint).

    Args:
        block: the mapping from the YAML file: ``name`` (required), ``title``, ``source``,
            ``expected_nme`` (WFLW subset -> NME % or null), ``notes``; ``overridden`` (list of settings
            the command line changed) is added by :func:`train.config.config_from_args`.
        origin: for messages.

    Raises:
        UsageError: not a mapping, an unknown key, no name, an unknown subset or a non-numeric NME.
    """
    if not isinstance(block, Mapping):
        raise UsageError(f"{origin}: the recipe block must be a mapping (name, title, source, expected_nme, notes), "
                         f"got {type(block).__name__}")
    unknown = [key for key in block if key not in RECORD_KEYS]
    if unknown:
        raise UsageError(f"{origin}: unknown recipe key '{unknown[0]}'.{did_you_mean(str(unknown[0]), RECORD_KEYS)} "
                         f"Valid: {', '.join(RECORD_KEYS)}")
    if not block.get("name"):
        raise UsageError(f"{origin}: the recipe block needs a name (e.g. name: wflw_resnet18)")
    expected = block.get("expected_nme") or {}
    if not isinstance(expected, Mapping):
        raise UsageError(f"{origin}: expected_nme must map WFLW subsets ({', '.join(WFLW_SUBSETS)}) to NME %")
    checked: dict[str, float | None] = {}
    for subset, value in expected.items():
        if subset not in WFLW_SUBSETS:
            raise UsageError(f"{origin}: unknown WFLW subset '{subset}' in expected_nme."
                             f"{did_you_mean(str(subset), WFLW_SUBSETS)} Valid: {', '.join(WFLW_SUBSETS)}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UsageError(f"{origin}: expected_nme {subset} must be a number (NME %) or null, got {value!r}")
        checked[str(subset)] = None if value is None else float(value)
    return {
        "name": str(block["name"]),
        "title": str(block.get("title") or block["name"]),
        "source": str(block.get("source") or ""),
        "expected_nme": checked,
        "notes": str(block.get("notes") or "").strip(),
        "overridden": [str(name) for name in block.get("overridden") or []],
    }


def load_recipe(spec: str | Path) -> dict[str, Any]:
    """The recipe record of a recipe file, given as a path or as a name from :func:`list_recipes`.

    Raises:
        UsageError: no such file or recipe, or the file has no ``recipe:`` block.
    """
    from train.config import load_yaml

    values = load_yaml(spec)
    if "recipe" not in values:
        raise UsageError(f"{spec}: a config without a `recipe:` block; pass a recipe ({', '.join(list_recipes())})")
    return recipe_record(values["recipe"], origin=str(spec))


def comparison_table(metrics: Mapping[str, Any], recipe: Mapping[str, Any]) -> str:
    """Markdown: measured NME per WFLW subset beside the recipe's expected NME and the difference.

    Args:
        metrics: :func:`train.engine.evaluate_samples` output; its ``subsets`` table when the data
            carries WFLW attributes, otherwise only ``nme`` and ``count`` (a Fullset row).
        recipe: a record from :func:`recipe_record`.
    """
    # Without WFLW attributes in the data there is only the whole set to compare.
    measured = metrics.get("subsets") or {"Fullset": {"count": metrics["count"], "nme": metrics["nme"]}}
    expected = recipe.get("expected_nme") or {}
    if "subsets" not in metrics:
        expected = {subset: value for subset, value in expected.items() if subset == "Fullset"}
    lines = [
        f"Recipe {recipe['name']} ({recipe.get('title', '')}); expected: {recipe.get('source') or 'no source given'}",
        "| subset | images | NME % | expected NME % | measured - expected |",
        "|---|---:|---:|---:|---:|",
    ]
    for subset in WFLW_SUBSETS:
        if subset not in measured and subset not in expected:
            continue
        row = measured.get(subset)
        count = row["count"] if row else 0
        nme = row["nme"] if row and count and not math.isnan(row["nme"]) else None
        target = expected.get(subset)
        difference = f"{nme - target:+.2f}" if nme is not None and target is not None else "-"
        lines.append(
            f"| {subset} | {count} | {'-' if nme is None else f'{nme:.2f}'} | "
            f"{'none given' if target is None else f'{target:.2f}'} | {difference} |"
        )
    notes = []
    if all(value is None for value in expected.values()):
        notes.append("this recipe has no published number to compare with")
    if metrics.get("count") != WFLW_TEST_FACES:
        notes.append(f"the expected numbers are on the WFLW test set ({WFLW_TEST_FACES} faces); this data has "
                     f"{metrics.get('count')}, so the comparison only means something on that set")
    if recipe.get("overridden"):
        notes.append(f"the run changed the recipe's {', '.join(recipe['overridden'])}")
    return "\n".join(lines + [f"Note: {note}." for note in notes])
