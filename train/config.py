"""Training configuration: one frozen dataclass, filled from defaults < YAML file < command-line flags."""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


from runtime.errors import UsageError, did_you_mean


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved in every checkpoint.

    Data paths accept a WFLW ``list_98pt_rect_attr_*.txt``, an HRNet-style ``.csv`` or a folder of
    images with iBUG ``.pts`` files; ``image_root`` is where list/CSV image paths are relative to.
    """

    train_data: str = ""
    val_data: str = ""
    image_root: str = ""
    avs_root: str = ""
    avs_ratio: float = 1.0  # synthetic samples per real sample in each epoch
    layout: str = "wflw98"
    model: str = "resnet18_deconv"
    input_size: int = 0  # 0: the model's default
    sigma: float = 1.5  # target Gaussian sigma in heatmap pixels
    loss: str = "adaptive_wing"
    distance_loss_weight: float = 0.0  # weight of the soft-argmax normalised distance loss
    decode: str = "centroid"
    augment: bool = True
    epochs: int = 60
    batch_size: int = 16
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | step | constant
    milestones: tuple[int, ...] = (30, 50)
    warmup_epochs: int = 0
    workers: int = 2
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # only on CUDA
    channels_last: bool = True  # only on CUDA
    out_dir: str = "runs/train"
    resume: str = ""  # checkpoint to continue from ("auto": <out_dir>/last.pt)
    eval_every: int = 1
    max_steps_per_epoch: int = 0  # 0: the whole epoch (tests and smoke runs cap it)
    tensorboard: bool = True  # when the tensorboard package is installed
    # Quantization-aware fine-tuning (train/qat.py): start from --init, fake-quantize, export as int8 Q/DQ.
    init: str = ""  # float checkpoint whose weights the run starts from (fresh optimiser and schedule)
    qat: bool = False
    qat_keep_float: str = ""  # comma-separated: first_conv, head (as export.ort --keep-float)
    qat_calibration_batches: int = 4  # training batches that set the initial activation ranges
    qat_range: str = "minmax"  # minmax | percentile (initial activation ranges)
    qat_percentile: float = 99.99
    qat_ema: float = 0.01  # moving-average weight of each batch's activation range (0: fixed ranges)
    qat_freeze_bn_steps: int = 200  # BatchNorm statistics frozen after this many steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELD_TYPES = typing.get_type_hints(TrainConfig)
# What --qat changes when the flags and the YAML file leave it: fine-tuning is short, at a low rate.
QAT_DEFAULTS = {"epochs": 5, "lr": 1e-4}


def _coerce(name: str, value: Any) -> Any:
    kind = _FIELD_TYPES[name]
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
            raise UsageError(f"{origin}: unknown setting '{key}'.{did_you_mean(name, names)}")
        updates[name] = _coerce(name, value)
    return dataclasses.replace(base or TrainConfig(), **updates)


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml  # the train extra; imported here so `--help` and a missing extra are one line

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise UsageError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise UsageError(f"{path}: expected a mapping of setting: value, got {type(values).__name__}")
    return values


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per config field (default None = "not given"), plus ``--config FILE.yaml``."""
    parser.add_argument("--config", help="YAML file of settings; flags override it")
    for field in fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        kind = _FIELD_TYPES[field.name]
        metavar = {bool: "BOOL", int: "INT", float: "FLOAT"}.get(kind, "VALUE")
        # A bare boolean flag (`--qat`) means true; `--augment false` still takes its value.
        extra = {"nargs": "?", "const": "true"} if kind is bool else {}
        parser.add_argument(
            flag, dest=field.name, default=None, metavar=metavar, help=f"default: {field.default!r}", **extra
        )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults (:data:`QAT_DEFAULTS` under ``--qat``), then ``--config``, then the flags that were given."""
    config = TrainConfig()
    explicit: set[str] = set()
    if args.config:
        values = load_yaml(args.config)
        config = config_from_mapping(values, config, origin=args.config)
        explicit |= {key.replace("-", "_") for key in values}
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    config = config_from_mapping(given, config, origin="command line")
    if config.qat:
        explicit |= set(given)
        config = dataclasses.replace(config, **{k: v for k, v in QAT_DEFAULTS.items() if k not in explicit})
    return config
