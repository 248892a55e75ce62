"""Training configuration: one frozen dataclass, filled from defaults < YAML file < command-line flags.

Every field carries its own help text (``field(metadata={"help": ...})``); ``python -m train --help``
is generated from them, with the allowed values of the named settings read from their registries.
The YAML format is documented in ``train/configs/README.md``.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


from runtime.errors import UsageError, did_you_mean

# Allowed values of the named settings that live in train/ itself (engine.validate checks them);
# models, layouts and losses come from their registries (see :func:`allowed_values`).
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "step", "constant")
DECODE_METHODS = ("argmax", "centroid", "soft_argmax")
DEVICES = ("auto", "cpu", "cuda")
QAT_RANGES = ("minmax", "percentile")


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved in every checkpoint.

    Data paths accept a WFLW ``list_98pt_rect_attr_*.txt``, an HRNet-style ``.csv`` or a folder of
    images with iBUG ``.pts`` files; ``image_root`` is where list/CSV image paths are relative to.
    """

    # Data
    train_data: str = _setting("", "training set: a WFLW list_98pt_rect_attr_*.txt, an HRNet-style .csv or a folder "
                                   "of images with .pts files (required)")
    val_data: str = _setting("", "validation set, same formats; scored every --eval-every epochs (empty: none, "
                                 "best.pt is then the last epoch)")
    image_root: str = _setting("", "folder the image paths of a list/CSV file are relative to (e.g. WFLW/WFLW_images)")
    avs_root: str = _setting("", "folder of AVS style-translated faces (read by runtime.annotations.read_avs_root) "
                                 "mixed into the training set (empty: none)")
    avs_ratio: float = _setting(1.0, "synthetic AVS samples per real sample in each epoch (0: none)")
    layout: str = _setting("wflw98", "landmark layout of the data")
    # Model and targets
    model: str = _setting("resnet18_deconv", "network (python -m train.models lists sizes and FLOPs)")
    input_size: int = _setting(0, "side of the square input crop in pixels (0: the model's default); the heatmap "
                                  "side is input_size / 4")
    sigma: float = _setting(1.5, "Gaussian sigma of the heatmap targets, in heatmap pixels")
    loss: str = _setting("adaptive_wing", "heatmap loss")
    distance_loss_weight: float = _setting(0.0, "weight of an added soft-argmax normalised-distance loss (0: off)")
    decode: str = _setting("centroid", "heatmap -> point decoding used for validation and stored for export")
    augment: bool = _setting(True, "random rotation (+-30 deg), scale (0.75-1.25), shift, flip and photometric "
                                   "jitter (train.augment.AugmentConfig)")
    # Optimisation
    epochs: int = _setting(60, "training epochs")
    batch_size: int = _setting(16, "images per optimiser step, over all processes")
    optimizer: str = _setting("adam", "optimiser (sgd: momentum 0.9, Nesterov)")
    lr: float = _setting(1e-3, "peak learning rate")
    weight_decay: float = _setting(0.0, "L2 weight decay (decoupled for adamw)")
    schedule: str = _setting("cosine", "learning-rate schedule per epoch after warm-up (step: x0.1 at each milestone)")
    milestones: tuple[int, ...] = _setting((30, 50), "epochs where the step schedule multiplies the rate by 0.1 "
                                                     "(comma-separated)")
    warmup_epochs: int = _setting(0, "epochs of linear warm-up before the schedule")
    # Machine
    workers: int = _setting(2, "DataLoader worker processes per training process (0: load in the main process)")
    threads: int = _setting(0, "torch CPU threads per process (0: torch's default, one per core); on a machine other "
                               "busy processes share, 1 can be several times faster than the default")
    seed: int = _setting(0, "seed of weights, sampling and augmentation (a resumed run continues exactly)")
    device: str = _setting("auto", "where to train (auto: CUDA when torch sees a GPU)")
    amp: bool = _setting(True, "float16 autocast (CUDA only; ignored on the CPU)")
    channels_last: bool = _setting(True, "channels_last memory format (CUDA only)")
    # Outputs
    out_dir: str = _setting("runs/train", "folder of last.pt, best.pt, metrics.csv, summary.json and tensorboard/")
    resume: str = _setting("", "checkpoint to continue from (auto: <out-dir>/last.pt when it exists)")
    eval_every: int = _setting(1, "validate every N epochs (and after the last)")
    max_steps_per_epoch: int = _setting(0, "cap on optimiser steps per epoch (0: the whole epoch; smoke runs cap it)")
    tensorboard: bool = _setting(True, "also write TensorBoard scalars (when the tensorboard package is installed)")
    # Quantization-aware fine-tuning (train/qat.py): start from --init, fake-quantize, export as int8 Q/DQ.
    init: str = _setting("", "float checkpoint whose weights the run starts from (fresh optimiser and schedule)")
    qat: bool = _setting(False, "quantization-aware fine-tuning of --init (epochs 5 and lr 1e-4 unless given)")
    qat_keep_float: str = _setting("", "comma-separated convolutions left float under --qat: first_conv, head")
    qat_calibration_batches: int = _setting(4, "training batches that set the initial activation ranges (--qat)")
    qat_range: str = _setting("minmax", "how those initial activation ranges are set (--qat)")
    qat_percentile: float = _setting(99.99, "share of |x| the range covers with --qat-range percentile")
    qat_ema: float = _setting(0.01, "moving-average weight of each batch's activation range (--qat; 0: fixed ranges)")
    qat_freeze_bn_steps: int = _setting(200, "BatchNorm statistics frozen after this many steps (--qat)")
    # Set by a recipe file's `recipe:` block (train/configs/), not by a flag: the recipe's name, source
    # and expected WFLW numbers travel in every checkpoint so python -m train.eval can print them.
    recipe: dict[str, Any] | None = _setting(None, "recipe record (name, source, expected WFLW NME); set by the "
                                                   "`recipe:` block of a recipe file")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def field_help(name: str) -> str:
    """The help text of config field ``name``."""
    return next(f.metadata["help"] for f in fields(TrainConfig) if f.name == name)


def allowed_values() -> dict[str, tuple[str, ...]]:
    """Allowed values of each named setting, read from the registries (models need torch: the train extra)."""
    from runtime.layouts import LAYOUTS

    values: dict[str, tuple[str, ...]] = {
        "layout": tuple(LAYOUTS),
        "optimizer": OPTIMIZERS,
        "schedule": SCHEDULES,
        "decode": DECODE_METHODS,
        "device": DEVICES,
        "qat_range": QAT_RANGES,
    }
    try:
        from train.losses import HEATMAP_LOSSES
        from train.models import list_models

        values["model"] = tuple(list_models())
        values["loss"] = HEATMAP_LOSSES
    except ImportError:  # --help without the train extra still works; validate() names the fix
        pass
    return values


_FIELD_TYPES = typing.get_type_hints(TrainConfig)
# What --qat changes when the flags and the YAML file leave it: fine-tuning is short, at a low rate.
QAT_DEFAULTS = {"epochs": 5, "lr": 1e-4}
# Fields a recipe file sets through its `recipe:` block only, never through a flag.
RECIPE_ONLY = ("recipe",)


def _coerce(name: str, value: Any) -> Any:
    kind = _FIELD_TYPES[name]
    if name == "recipe":
        from train.recipes import recipe_record

        return None if value is None else recipe_record(value)
    try:
        if kind is bool:
            if isinstance(value, str):
                lowered = value.lower()
                if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                return lowered in ("1", "true", "yes", "on")
            return bool(value)
        if kind in (int, float, str):
            return kind(value)
        if kind == tuple[int, ...]:
            if isinstance(value, str):
                value = [part for part in value.replace(",", " ").split() if part]
            return tuple(int(part) for part in value)
    except (TypeError, ValueError):
        raise UsageError(f"config '{name}' expects {getattr(kind, '__name__', kind)}, got {value!r}") from None
    raise TypeError(f"unsupported config field type {kind} for {name}")


def config_from_mapping(values: dict[str, Any], base: TrainConfig | None = None, origin: str = "config") -> TrainConfig:
    """Apply ``values`` (YAML or flags, dashes or underscores) over ``base``; unknown keys are an error."""
    names = [f.name for f in fields(TrainConfig)]
    updates = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in names:
            raise UsageError(f"{origin}: unknown setting '{key}'.{did_you_mean(name, names)} "
                             "Settings are listed by python -m train --help and in train/configs/README.md")
        updates[name] = _coerce(name, value)
    return dataclasses.replace(base or TrainConfig(), **updates)


def resolve_config(spec: str | Path) -> Path:
    """A ``--config`` value as a file: an existing path, or the name of a recipe in ``train/configs/``."""
    from train.recipes import RECIPES_DIR, list_recipes

    path = Path(spec)
    if path.is_file():
        return path
    if path.suffix == "" and (RECIPES_DIR / f"{path.name}.yaml").is_file():
        return RECIPES_DIR / f"{path.name}.yaml"
    names = list_recipes()
    raise UsageError(
        f"{spec}: config file not found, nor a recipe of that name.{did_you_mean(str(spec), names)} "
        f"Recipes: {', '.join(names)} (train/configs/)"
    )


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml  # the train extra; imported here so `--help` and a missing extra are one line

    path = resolve_config(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise UsageError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise UsageError(f"{path}: expected a mapping of setting: value, got {type(values).__name__}")
    return values


def _format_default(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value) or "none"
    if isinstance(value, str):
        return value or "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per config field (default None = "not given"), plus ``--config FILE.yaml``.

    Each flag's help is the field's description, its allowed values where it names something from a
    registry, and its default.
    """
    from train.recipes import list_recipes

    parser.add_argument(
        "--config", metavar="FILE_OR_RECIPE",
        help="YAML file of settings, or the name of a recipe in train/configs/ "
        f"({', '.join(list_recipes())}); flags override it. Format: train/configs/README.md",
    )
    choices = allowed_values()
    groups: dict[str, argparse._ArgumentGroup] = {}
    for field_ in fields(TrainConfig):
        if field_.name in RECIPE_ONLY:
            continue
        flag = "--" + field_.name.replace("_", "-")
        kind = _FIELD_TYPES[field_.name]
        metavar = {bool: "BOOL", int: "INT", float: "FLOAT"}.get(kind, "LIST" if kind == tuple[int, ...] else "VALUE")
        text = field_.metadata["help"]
        if field_.name in choices:
            metavar = "NAME"
            text += f"; one of: {', '.join(choices[field_.name])}"
        elif kind is bool:
            text += "; true/false (a bare flag means true)"
        text += f" (default: {_format_default(field_.default)})"
        # A bare boolean flag (`--qat`) means true; `--augment false` still takes its value.
        extra = {"nargs": "?", "const": "true"} if kind is bool else {}
        group_name = _GROUPS.get(field_.name, "training")
        group = groups.get(group_name) or groups.setdefault(group_name, parser.add_argument_group(group_name))
        group.add_argument(flag, dest=field_.name, default=None, metavar=metavar, help=text, **extra)


# Help sections, in the order the fields are declared; a field not named here goes under "training".
_GROUPS = {
    **dict.fromkeys(("train_data", "val_data", "image_root", "avs_root", "avs_ratio", "layout"), "data"),
    **dict.fromkeys(("model", "input_size", "sigma", "loss", "distance_loss_weight", "decode", "augment"),
                    "model and targets"),
    **dict.fromkeys(("workers", "threads", "seed", "device", "amp", "channels_last"), "machine"),
    **dict.fromkeys(("out_dir", "resume", "eval_every", "max_steps_per_epoch", "tensorboard"), "outputs"),
    **dict.fromkeys(("init", "qat", "qat_keep_float", "qat_calibration_batches", "qat_range", "qat_percentile",
                     "qat_ema", "qat_freeze_bn_steps"), "quantization-aware fine-tuning (--qat)"),
}
# Settings that change what a run measures; overriding one of a recipe's is recorded with the recipe.
_NOT_RECIPE_SETTINGS = {"train_data", "val_data", "image_root", "avs_root", "workers", "threads", "device", "out_dir",
                        "resume",
                        "eval_every", "tensorboard", "recipe"}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults (:data:`QAT_DEFAULTS` under ``--qat``), then ``--config``, then the flags that were given.

    When the config is a recipe (it has a ``recipe:`` block), the settings the flags change are written
    into the recipe record (``overridden``), so an evaluation can say the run departed from the recipe.
    """
    config = TrainConfig()
    explicit: set[str] = set()
    if args.config:
        values = load_yaml(args.config)
        config = config_from_mapping(values, config, origin=str(args.config))
        explicit |= {key.replace("-", "_") for key in values}
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    from_file = config
    config = config_from_mapping(given, config, origin="command line")
    if config.qat:
        explicit |= set(given)
        config = dataclasses.replace(config, **{k: v for k, v in QAT_DEFAULTS.items() if k not in explicit})
    if config.recipe is not None:
        changed = sorted(
            f.name for f in fields(TrainConfig)
            if f.name not in _NOT_RECIPE_SETTINGS and getattr(config, f.name) != getattr(from_file, f.name)
        )
        config = dataclasses.replace(config, recipe={**config.recipe, "overridden": changed})
    return config
