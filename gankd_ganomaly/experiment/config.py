"""The description of one GANomaly run: :class:`RunConfig`, its files and ``key=value`` overrides.

:class:`RunConfig` round-trips through dicts, YAML and JSON (:meth:`RunConfig.load`, :meth:`RunConfig.save`) and
takes overrides (:func:`apply_overrides`). Invalid values raise :class:`ConfigError` naming the field and value.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

import gankd
from gankd import OptimizerConfig, get_schedule

from ..data import ALL_DATASETS, FOLDER, class_names, dataset_spec
from ..evaluation import BN_MODES
from ..hooks import RECIPES, GanomalyLossWeights
from ..networks import IMAGE_SIZE, IMAGE_SIZES, TEACHER_WIDTHS

SCHEDULE_METHODS = ("teacher", "student-alone", "KDGAN-1", "KDGAN-2", "KDGAN-3", "KDGAN-4",
                    "P-KDGAN-I", "P-KDGAN-II-23", "P-KDGAN-II-24")
# recipes of GanomalyHooks that are not a schedule preset: a method name too ("paper" is its preset P-KDGAN-II-23)
RECIPE_METHODS = tuple(name for name, r in RECIPES.items() if r.preset is None)
PRESET_RECIPES = {r.preset: name for name, r in RECIPES.items() if r.preset is not None}
METHODS = SCHEDULE_METHODS + RECIPE_METHODS
RUN_FILES = ("config.yaml", "checkpoint.pt", "history.json", "metrics.csv", "record.json", "model.pt")
RUN_FOLDERS = ("tensorboard",)  # --tensorboard's logs: replaced with the run, as its files are
# share of train images held out to calibrate the threshold when calibration_share is None: folder datasets set
# 10% aside; built-in datasets none (their runs train on every normal image, as before: sweeps depend on it)
DEFAULT_CALIBRATION_SHARE = {FOLDER: 0.1}


class ConfigError(ValueError):
    """A run configuration is invalid: the message names the field (or file, or override) and the bad value."""


_INT_FIELDS = ("normal_class", "epochs", "batch_size", "eval_batch_size", "eval_every", "seed")
_POSITIVE_INT_FIELDS = ("epochs", "batch_size", "eval_batch_size", "eval_every")
_OPTIONAL_STR_FIELDS = ("data_root", "teacher_checkpoint")


@dataclass
class RunConfig:
    """Everything that determines one run; written next to every result (``config.yaml``).

    ``epochs`` is per stage (the paper's M); ``student_widths=None`` resolves to the dataset's
    preset; ``image_size`` (32, 64 or 128) is the side every image is resized to and the networks are built for
    (GANomaly's extra pyramid blocks above 32, :mod:`gankd_ganomaly.networks`); ``teacher_checkpoint`` is the
    trained teacher a distillation method starts from (a ``model.pt`` written by a teacher run, or that run's
    folder).
    """

    dataset: str = "digits"
    normal_class: int = 0
    method: str = "P-KDGAN-II-23"
    epochs: int = 15                     # per stage (the paper's M)
    batch_size: int = 16
    lr: float = OptimizerConfig().lr     # the library's default (2e-4); the paper's 0.002 is the `paper` budget
    beta1: float = 0.5
    seed: int = 0
    bn_mode: str = "eval"                # batch-norm at test time: "eval" or "batch"
    eval_batch_size: int = 256
    eval_every: int = 1
    teacher_widths: tuple[int, int, int] = TEACHER_WIDTHS
    student_widths: tuple[int, int, int] | None = None  # None: the dataset's preset
    loss_weights: GanomalyLossWeights = field(default_factory=GanomalyLossWeights)
    data_root: str | None = None
    download: bool = False
    device: str = "cpu"
    channels_last: bool | str = "auto"   # "auto": channels-last for networks whose widths are all >= 8
    compile: bool = False                # torch.compile every network (measured: no gain at 2 threads)
    teacher_checkpoint: str | None = None
    channels: int | None = None          # folder datasets: 1 or 3 forces it; None: read from the images
    calibration_share: float | None = None  # train images held out for the threshold; None: 0.1 folder, 0 others
    target_fpr: float = 0.01             # false-positive rate the threshold aims at on normal images
    image_size: int = IMAGE_SIZE         # 32, 64 or 128: images are resized to it, networks built for it

    def __post_init__(self) -> None:
        if self.dataset not in ALL_DATASETS:
            raise ConfigError(f"dataset must be one of {', '.join(ALL_DATASETS)}; got {self.dataset!r}")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.bn_mode not in BN_MODES:
            raise ConfigError(f"bn_mode must be one of {', '.join(BN_MODES)}; got {self.bn_mode!r}")
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        for name in _POSITIVE_INT_FIELDS:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        n_classes = len(class_names(self.dataset))
        if not 0 <= self.normal_class < n_classes:
            raise ConfigError(f"normal_class must be in [0, {n_classes - 1}] for dataset {self.dataset!r}; "
                              f"got {self.normal_class!r}")
        self.lr = _number("lr", self.lr)
        if not self.lr > 0:
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        self.beta1 = _number("beta1", self.beta1)
        if not 0 <= self.beta1 < 1:
            raise ConfigError(f"beta1 must be in [0, 1), got {self.beta1!r}")
        for name in ("download", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.channels_last, bool) and self.channels_last != "auto":
            raise ConfigError(f"channels_last must be true, false or 'auto', got {self.channels_last!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError(f"device must be a torch device name such as 'cpu' or 'cuda', got {self.device!r}")
        for name in _OPTIONAL_STR_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, Path)):
                raise ConfigError(f"{name} must be a path or null, got {value!r}")
            if value is not None:
                setattr(self, name, str(value))
        if self.channels is not None:
            if isinstance(self.channels, bool) or self.channels not in (1, 3):
                raise ConfigError(f"channels must be 1 (gray), 3 (colour) or null (read from a folder's images), "
                                  f"got {self.channels!r}")
            if self.dataset != FOLDER and self.channels != dataset_spec(self.dataset).channels:
                raise ConfigError(f"channels={self.channels} does not apply to dataset {self.dataset!r}, whose "
                                  f"images have {dataset_spec(self.dataset).channels} channel(s): it is for folder "
                                  "datasets")
        if self.calibration_share is not None:
            self.calibration_share = _number("calibration_share", self.calibration_share)
            if not 0 <= self.calibration_share <= 0.5:
                raise ConfigError(f"calibration_share must be in [0, 0.5] (or null: 0.1 for folder datasets, 0 "
                                  f"for the built-in ones), got {self.calibration_share!r}")
        if isinstance(self.image_size, bool) or self.image_size not in IMAGE_SIZES:
            raise ConfigError(f"image_size must be one of {', '.join(map(str, IMAGE_SIZES))} (images are resized to "
                              f"image_size x image_size), got {self.image_size!r}")
        self.image_size = int(self.image_size)
        self.target_fpr = _number("target_fpr", self.target_fpr)
        if not 0 < self.target_fpr < 0.5:
            raise ConfigError(f"target_fpr must be in (0, 0.5), e.g. 0.01 for 1%; got {self.target_fpr!r}")
        self.loss_weights = _loss_weights(self.loss_weights)
        self.teacher_widths = _widths("teacher_widths", self.teacher_widths)  # type: ignore[assignment]
        if self.student_widths is None:
            # a folder of your own images starts from the MNIST student (2-4-8): small, and enough for digits
            self.student_widths = dataset_spec("mnist" if self.dataset == FOLDER else self.dataset).student_widths
        self.student_widths = _widths("student_widths", self.student_widths)  # type: ignore[assignment]

    # --- derived ----------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        """Channel count of the dataset's images (1 grayscale, 3 RGB); a folder's once resolved
        (:func:`load_run_data` sets ``channels`` from its images)."""
        if self.channels is not None:
            return self.channels
        if self.dataset == FOLDER:
            raise ConfigError(f"the channel count of a {self.dataset!r} dataset is read from its images: load it "
                              "with load_run_data(cfg) first, or set channels (1 or 3)")
        return dataset_spec(self.dataset).channels

    @property
    def resolved_calibration_share(self) -> float:
        """The share of train images held out to calibrate the threshold (``calibration_share``, else the
        dataset's default: 0.1 for folder datasets, 0 for built-in ones)."""
        if self.calibration_share is not None:
            return self.calibration_share
        return DEFAULT_CALIBRATION_SHARE.get(self.dataset, 0.0)

    @property
    def trained_widths(self) -> tuple[int, int, int]:
        """Widths of the network this run trains: the teacher's for ``method="teacher"``, else the student's."""
        return self.teacher_widths if self.method == "teacher" else self.student_widths  # type: ignore[return-value]

    @property
    def recipe(self) -> str | None:
        """The distillation recipe this run follows: ``"paper"`` for P-KDGAN-II-23 (Eq. 6, Algorithm 1), the
        recipe's name for a recipe method, ``None`` for the other methods (a teacher, a student alone, or a
        single paper structure)."""
        if self.method in RECIPE_METHODS:
            return self.method
        return PRESET_RECIPES.get(self.method)

    def schedule(self) -> gankd.Schedule:
        """The :class:`gankd.Schedule` of ``method`` (a preset or a recipe), with ``epochs`` per stage."""
        optimizer = OptimizerConfig(lr=self.lr, betas=(self.beta1, 0.999))
        if self.method in RECIPE_METHODS:
            return RECIPES[self.method].schedule(self.epochs, optimizer)
        return get_schedule(self.method, self.epochs, optimizer)

    # --- conversions --------------------------------------------------------------------
    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with some fields changed (validated again)."""
        return RunConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict:
        """Plain types only (lists, not tuples), as written to YAML/JSON."""
        d = asdict(self)
        d["teacher_widths"], d["student_widths"] = list(self.teacher_widths), list(self.student_widths or ())
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys raise :class:`ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a run config must be a mapping of field names to values, got {type(data).__name__}")
        _reject_unknown_keys(data, cls, "config keys")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        """Read a ``.yaml``/``.yml`` or ``.json`` file (see :func:`read_config_file`)."""
        return cls.from_dict(read_config_file(path))

    def save(self, path: str | Path) -> None:
        """Write YAML (``.yaml``/``.yml``) or JSON (any other suffix), atomically."""
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        else:
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        gankd.atomic_write_text(path, text)


def _number(name: str, value: Any) -> float:
    """A finite float from a number or a numeric string (YAML reads ``2e-4`` as a string)."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return number


def _widths(name: str, value: Any) -> tuple[int, int, int]:
    try:
        widths = tuple(value)
    except TypeError:
        widths = (value,)
    if len(widths) != 3 or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
        raise ConfigError(f"{name} must be three positive integers (c1, c2, c3), got {value!r}")
    return widths  # type: ignore[return-value]


def _reject_unknown_keys(data: Mapping[str, Any], cls: type, what: str) -> None:
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown {what} {unknown}; valid keys: {', '.join(known)}")


def _loss_weights(value: Any) -> GanomalyLossWeights:
    if isinstance(value, GanomalyLossWeights):
        value = asdict(value)
    if not isinstance(value, Mapping):
        raise ConfigError(f"loss_weights must be a mapping like {{w_con: 10, w_adv: 1}}, got {value!r}")
    _reject_unknown_keys(value, GanomalyLossWeights, "loss weights")
    checked = {}
    for name, weight in value.items():
        number = _number(f"loss_weights.{name}", weight)
        if number < 0:
            raise ConfigError(f"loss_weights.{name} must be >= 0, got {weight!r}")
        checked[name] = number
    return GanomalyLossWeights(**checked)


def read_config_file(path: str | Path) -> dict:
    """The mapping in a YAML (``.yaml``/``.yml``) or JSON (``.json``) config file.

    Raises :class:`FileNotFoundError` for a missing file and :class:`ConfigError` for an unknown suffix,
    a syntax error or a file whose top level is not a mapping, each naming the file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"config file {str(path)!r} is a folder: give a .yaml, .yml or .json file")
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from None
    elif path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"config file {str(path)!r} is not valid JSON: {err}") from None
    else:
        raise ConfigError(f"config file {str(path)!r}: unknown suffix {path.suffix!r}; use .yaml, .yml or .json")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of field names to values, "
                          f"got {type(data).__name__}")
    return data


def apply_overrides(data: Mapping[str, Any], assignments: Sequence[str]) -> dict:
    """Apply ``key=value`` overrides to a config dict (a copy is returned).

    Values are parsed as YAML (``epochs=3`` is an int, ``teacher_widths=[4,8,16]`` a list, ``data_root=null``
    None); ``loss_weights.w_con=5`` sets one loss weight. Unknown keys raise :class:`ConfigError` listing the
    valid ones.
    """
    import yaml

    result = copy.deepcopy(dict(data))
    known = [f.name for f in fields(RunConfig)]
    for item in assignments:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. epochs=3)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        head, _, sub = key.partition(".")
        if head not in known:
            raise ConfigError(f"override {item!r}: unknown config key {head!r}; valid keys: {', '.join(known)}")
        if sub:
            if head != "loss_weights":
                raise ConfigError(f"override {item!r}: only loss_weights has sub-keys (loss_weights.w_con=...)")
            weights = result.get("loss_weights", {})
            weights = asdict(weights) if isinstance(weights, GanomalyLossWeights) else dict(weights)
            weights[sub] = value
            result["loss_weights"] = weights
        else:
            result[head] = value
    return result


# how a run executes, not what it computes: a run may resume with other values
EXECUTION_FIELDS = ("channels_last", "compile")


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``["epochs: 2 -> 3", "loss_weights.w_con: 50 -> 20", ...]``: :func:`gankd.runfolder.key_differences` of two
    config dicts, :data:`EXECUTION_FIELDS` aside."""
    from gankd.runfolder import key_differences

    # a field added after a config was saved has its default there (configs written before it existed)
    defaults = {f.name: f.default for f in fields(RunConfig) if isinstance(f.default, (int, float, str, type(None)))}
    saved = {**{k: defaults[k] for k in current if k not in saved and k in defaults}, **saved}
    drop = lambda config: {k: v for k, v in config.items() if k not in EXECUTION_FIELDS}  # noqa: E731
    return key_differences(drop(saved), drop(current))


def channels_last_networks(cfg: RunConfig, widths: Mapping[str, Sequence[int]]) -> tuple[str, ...]:
    """Which of the engine's networks (``{"teacher": widths, "student": widths}``) train channels-last.

    ``"auto"`` picks channels-last for networks whose widths are all >= 8 (the teacher, the CIFAR-10
    student), the layout that wins in ``benchmarks/`` (section ``switches``); the narrow (1-8-channel)
    MNIST / Fashion-MNIST students stay in the standard layout, where channels-last is slower.
    """
    if cfg.channels_last == "auto":
        return tuple(who for who, w in widths.items() if min(w) >= 8)
    return tuple(widths) if cfg.channels_last else ()


def check_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)`` if this machine can compute on it (:func:`gankd.resources.check_device`), else
    :class:`ConfigError` saying what to use.

    Run before anything is loaded or written, so a device name that cannot work (``tpu``, ``cuda`` on a
    CPU-only build or without a GPU, ``cuda:3`` on a one-GPU machine, ``meta``) fails first, with one line.
    """
    from gankd.resources import check_device as check_torch_device

    try:
        return check_torch_device(device)
    except ValueError as err:
        raise ConfigError(f"{err} (--device)") from None
