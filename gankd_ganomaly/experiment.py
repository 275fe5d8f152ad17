"""Train a teacher or distil a student for one dataset/normal class: the glue the CLI,
the demo and the examples share. Every result carries its resolved config.

- :class:`RunConfig` describes a run completely; it round-trips through dicts, YAML and JSON
  (:meth:`RunConfig.load`, :meth:`RunConfig.save`) and takes ``key=value`` overrides
  (:func:`apply_overrides`). Invalid values raise :class:`ConfigError` naming the field and value.
- :func:`run` is the one place that builds and runs a :class:`gankd.DistillationEngine`; with
  ``out_dir`` it writes ``config.yaml``, ``checkpoint.pt`` (every epoch), ``history.json``,
  ``metrics.csv``, ``record.json`` and ``model.pt``, and with ``resume=True`` continues from
  ``checkpoint.pt``.
- :func:`save_model` / :func:`load_model` write and read trained weights with a small header
  (widths, in_channels, method, config); loading is ``weights_only`` and names mismatched tensors.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

import gankd
from gankd import (GAN, CheckpointCallback, CheckpointError, DistillationEngine, EvaluationCallback, JSONHistory,
                   OptimizerConfig, get_schedule, load_checkpoint, load_weights, save_checkpoint)
from gankd.callbacks import CSVLogger, TensorBoardLogger, auto_progress
from gankd.modelfile import MODEL_FORMAT as GANKD_MODEL_FORMAT

from .data import (ALL_DATASETS, CHANNELS, FOLDER, class_names, OneClassData, ShuffledBatches, load_one_class,
                   validate_images)
from .evaluation import BN_MODES, anomaly_scores, calibrate_threshold, calibration_split, evaluate_auroc
from .flops import count_generator
from .hooks import RECIPES, GanomalyHooks, GanomalyLossWeights
from .networks import IMAGE_SIZE, LATENT_DIM, STUDENT_WIDTHS, TEACHER_WIDTHS

# digits are MNIST-like grayscale digits: their student is the MNIST one.
DEFAULT_STUDENT = {"digits": STUDENT_WIDTHS["mnist"], **STUDENT_WIDTHS}
SCHEDULE_METHODS = ("teacher", "student-alone", "KDGAN-1", "KDGAN-2", "KDGAN-3", "KDGAN-4",
                    "P-KDGAN-I", "P-KDGAN-II-23", "P-KDGAN-II-24")
# recipes of GanomalyHooks that are not a schedule preset: a method name too ("paper" is P-KDGAN-II-23)
RECIPE_METHODS = tuple(name for name in RECIPES if name != "paper")
METHODS = SCHEDULE_METHODS + RECIPE_METHODS
MODEL_FORMAT = "gankd-ganomaly-model"
SWEEP_TEACHER_FORMAT = "gankd-reproduce-teacher"  # written by gankd_ganomaly.sweep
RUN_FILES = ("config.yaml", "checkpoint.pt", "history.json", "metrics.csv", "record.json", "model.pt")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
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
    preset; ``teacher_checkpoint`` is the trained teacher a distillation method starts from
    (a ``model.pt`` written by a teacher run, or that run's folder).
    """

    dataset: str = "digits"
    normal_class: int = 0
    method: str = "P-KDGAN-II-23"
    epochs: int = 15                     # per stage (the paper's M)
    batch_size: int = 16
    lr: float = 0.002
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
            if self.dataset in CHANNELS and self.channels != CHANNELS[self.dataset]:
                raise ConfigError(f"channels={self.channels} does not apply to dataset {self.dataset!r}, whose "
                                  f"images have {CHANNELS[self.dataset]} channel(s): it is for folder datasets")
        if self.calibration_share is not None:
            self.calibration_share = _number("calibration_share", self.calibration_share)
            if not 0 <= self.calibration_share <= 0.5:
                raise ConfigError(f"calibration_share must be in [0, 0.5] (or null: 0.1 for folder datasets, 0 "
                                  f"for the built-in ones), got {self.calibration_share!r}")
        self.target_fpr = _number("target_fpr", self.target_fpr)
        if not 0 < self.target_fpr < 0.5:
            raise ConfigError(f"target_fpr must be in (0, 0.5), e.g. 0.01 for 1%; got {self.target_fpr!r}")
        self.loss_weights = _loss_weights(self.loss_weights)
        self.teacher_widths = _widths("teacher_widths", self.teacher_widths)  # type: ignore[assignment]
        if self.student_widths is None:
            self.student_widths = DEFAULT_STUDENT.get(self.dataset, STUDENT_WIDTHS["mnist"])
        self.student_widths = _widths("student_widths", self.student_widths)  # type: ignore[assignment]

    # --- derived ----------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        """Channel count of the dataset's images (1 grayscale, 3 RGB); a folder's once resolved
        (:func:`load_run_data` sets ``channels`` from its images)."""
        if self.channels is not None:
            return self.channels
        if self.dataset not in CHANNELS:
            raise ConfigError(f"the channel count of a {self.dataset!r} dataset is read from its images: load it "
                              "with load_run_data(cfg) first, or set channels (1 or 3)")
        return CHANNELS[self.dataset]

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
        return "paper" if self.method == "P-KDGAN-II-23" else None

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
    """``["epochs: 2 -> 3", ...]`` for every key whose value differs between two config dicts
    (:data:`EXECUTION_FIELDS` aside)."""
    keys = [k for k in dict.fromkeys([*saved, *current]) if k not in EXECUTION_FIELDS]
    # a field added after a config was saved has its default there (configs written before it existed)
    defaults = {f.name: f.default for f in fields(RunConfig) if isinstance(f.default, (int, float, str, type(None)))}
    saved = {**{k: defaults[k] for k in current if k not in saved and k in defaults}, **saved}
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]


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
    """``torch.device(device)`` if this machine can compute on it, else :class:`ConfigError` saying what to use.

    Run before anything is loaded or written, so a device name that cannot work (``tpu``, ``cuda`` on a
    CPU-only build or without a GPU, ``cuda:3`` on a one-GPU machine, ``meta``) fails first, with one line.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device {str(device)!r} is not a torch device name: use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (f"this torch build ({torch.__version__}) has no CUDA support" if torch.version.cuda is None
                   else "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)")
            raise ConfigError(f"device {str(device)!r}: {why}; use cpu (--device cpu)")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"device {str(device)!r}: this machine has {count} CUDA device(s), cuda:0 to "
                              f"cuda:{count - 1}")
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device {str(device)!r}: MPS (Apple GPU) is not available here; use cpu (--device cpu)")
        return dev
    if dev.type == "meta":
        raise ConfigError(f"device {str(device)!r} holds no data and cannot train or score; use cpu or cuda")
    try:
        torch.empty(1, device=dev)
    except Exception as err:  # noqa: BLE001 - any backend failure means "not usable here"
        why = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"device {str(device)!r} is not usable here ({why}); use cpu (--device cpu)") from None
    return dev


def make_hooks(cfg: RunConfig) -> GanomalyHooks:
    """The GANomaly hooks for the config's dataset (channel count) and loss weights."""
    return GanomalyHooks(in_channels=cfg.in_channels, weights=cfg.loss_weights)


def load_run_data(cfg: RunConfig) -> tuple[RunConfig, OneClassData]:
    """``(cfg, data)``: the config's dataset loaded, and the config with a folder's channel count resolved
    (``channels`` set from the images when it was None)."""
    data = load_one_class(cfg.dataset, cfg.normal_class, root=cfg.data_root, download=cfg.download,
                          channels=cfg.channels if cfg.dataset == FOLDER else None)
    if cfg.dataset == FOLDER and cfg.channels is None:
        cfg = cfg.replace(channels=data.channels)
    return cfg, data


def auroc_skip_reason(data: OneClassData) -> str | None:
    """Why AUROC cannot be measured on ``data``'s test split (no test images, or only one label), else None."""
    if len(data.test) == 0:
        return "no test images (a folder dataset without ROOT/test/good and ROOT/test/<defect> images)"
    n_novel = int(data.test_labels.sum())
    if n_novel == 0:
        return "the test split has no novel images (add ROOT/test/<defect>/ folders)"
    if n_novel == len(data.test):
        return "the test split has no normal images (add ROOT/test/good/)"
    return None


def build_gan(hooks: GanomalyHooks, widths: Sequence[int], seed: int) -> GAN:
    """Networks initialised from ``seed`` so teacher and student inits are reproducible on their own."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return hooks.build_gan(widths)


# --- model files ----------------------------------------------------------------------------------------------


def save_model(path: str | Path, gan: GAN, cfg: RunConfig, threshold: Mapping[str, Any] | None = None) -> None:
    """Write the trained GAN's state_dict with a header (widths, in_channels, method, config, and the calibrated
    decision ``threshold`` record when given), atomically.

    Plain tensors and containers only, so :func:`load_model` (``weights_only=True``) reads it.
    """
    extra = {"threshold": dict(threshold)} if threshold is not None else {}
    save_checkpoint(path, {
        **extra,
        "format": MODEL_FORMAT, "format_version": 1, "version": gankd.__version__,
        "method": cfg.method, "role": "teacher" if cfg.method == "teacher" else "student",
        "dataset": cfg.dataset, "normal_class": cfg.normal_class, "in_channels": cfg.in_channels,
        "widths": list(cfg.trained_widths), "latent_dim": LATENT_DIM, "config": cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in gan.state_dict().items()},
    })


def read_model_file(path: str | Path) -> tuple[dict, dict]:
    """``(header, state_dict)`` of a model file.

    Accepts a :func:`save_model` file, a ``gankd train`` model file (:mod:`gankd.modelfile`), a sweep's
    teacher checkpoint, an engine checkpoint (``checkpoint.pt`` of a run: the trained GAN is taken, with the
    run's config as header) or a bare state_dict (empty header). A run folder stands
    for its ``model.pt``. Loading never runs code (see :func:`gankd.load_checkpoint`).
    """
    path = Path(path)
    if path.is_dir():
        folder, path = path, path / "model.pt"
        if not path.exists():
            unfinished = (folder / "checkpoint.pt").exists()
            raise FileNotFoundError(f"{str(folder)!r} holds no model.pt" + (
                f": its run has not finished; pass {folder / 'checkpoint.pt'} for the last epoch's weights, or "
                "finish the run with --resume" if unfinished else ": give a run folder, a model.pt or a checkpoint"))
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{str(path)!r} holds a {type(ckpt).__name__}, not a model")
    if ckpt.get("format") == MODEL_FORMAT:
        header = {k: v for k, v in ckpt.items() if k != "state_dict"}
        return header, ckpt["state_dict"]
    if ckpt.get("format") == 1 and "schedule" in ckpt:
        config = (ckpt.get("metadata") or {}).get("config")
        if config is None:
            raise CheckpointError(f"{str(path)!r} is an engine checkpoint without a gankd-ganomaly run config")
        cfg = RunConfig.from_dict(config)
        role = "student" if ckpt.get("student") is not None else "teacher"
        header = {"format": "engine-checkpoint", "method": cfg.method, "role": role, "dataset": cfg.dataset,
                  "normal_class": cfg.normal_class, "in_channels": cfg.in_channels, "latent_dim": LATENT_DIM,
                  "widths": list(cfg.student_widths if role == "student" else cfg.teacher_widths),
                  "config": config, "version": ckpt.get("version")}
        return header, ckpt[role]
    if ckpt.get("format") == GANKD_MODEL_FORMAT:  # written by `gankd train` for the ganomaly family
        args = ckpt.get("family_args") or {}
        run_config = (ckpt.get("metadata") or {}).get("config") or {}
        data_args = (run_config.get("data") or {}).get("args") or {}  # one_class_batches names its data
        config = {k: data_args[k] for k in ("dataset", "normal_class") if k in data_args}
        if data_args.get("root"):
            config["data_root"] = data_args["root"]
        header = {"format": GANKD_MODEL_FORMAT, "role": ckpt.get("role"), "method": ckpt.get("role"),
                  "in_channels": int(args.get("in_channels", 3)), "widths": list(ckpt["width"]),
                  "latent_dim": int(args.get("latent_dim", LATENT_DIM)), "config": config,
                  "run_config": run_config, "version": ckpt.get("version")}
        return header, ckpt["state_dict"]
    if ckpt.get("format") == SWEEP_TEACHER_FORMAT:  # a sweep's teacher (results/*/teachers/*.pt)
        config = ckpt.get("config") or {}
        header = {"format": ckpt["format"], "role": "teacher", "method": "teacher",
                  "dataset": config.get("dataset"), "normal_class": config.get("normal_class"),
                  "in_channels": CHANNELS[config["dataset"]] if config.get("dataset") in CHANNELS else None,
                  "widths": list(config.get("teacher_widths") or TEACHER_WIDTHS), "latent_dim": LATENT_DIM,
                  "config": config, "version": ckpt.get("version")}
        return header, ckpt["state_dict"]
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return {}, ckpt
    raise CheckpointError(f"{str(path)!r} is not a gankd-ganomaly model: expected a model.pt (of gankd-ganomaly or "
                          "of `gankd train`), a run's checkpoint.pt, a sweep teacher or a state_dict; found keys "
                          f"{sorted(map(str, ckpt))[:10]}")


def load_model(path: str | Path, *, widths: Sequence[int] | None = None, in_channels: int | None = None,
               what: str = "model", role: str | None = None, allow_nonfinite: bool = False) -> tuple[GAN, dict]:
    """Build a GANomaly GAN and load weights from ``path``; returns ``(gan, header)``.

    ``widths``/``in_channels`` say which architecture the caller expects (default: the file's header). A file
    for another architecture raises :class:`gankd.CheckpointError` naming the tensors that differ.
    ``role="teacher"`` (or ``"student"``) refuses a file whose header says it holds the other role (a bare
    state_dict has no header and is taken as it is). Weights with NaN/Inf (a diverged run) are refused too,
    since every score they give is NaN; ``allow_nonfinite=True`` loads them anyway (to inspect them).
    """
    header, state_dict = read_model_file(path)
    if role is not None and header.get("role") not in (None, role):
        raise CheckpointError(
            f"{what} {str(path)!r} is a {header['role']} model (method {header.get('method')!r}, widths "
            f"{header.get('widths')}), not a {role}"
            + ("; a teacher is the model.pt of a teacher run (`gankd-ganomaly teacher --out DIR`, then DIR/model.pt)"
               if role == "teacher" else ""))
    if not allow_nonfinite:
        bad = [k for k, v in state_dict.items()
               if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise CheckpointError(
                f"{what} {str(path)!r} has NaN/Inf weights in {len(bad)} tensor(s) (the first: {bad[0]}): the run "
                "that wrote it diverged, so every score would be NaN; use an earlier checkpoint or train again "
                "(e.g. with a lower lr)")
    widths = tuple(widths) if widths is not None else (tuple(header["widths"]) if "widths" in header else None)
    in_channels = in_channels if in_channels is not None else header.get("in_channels")
    if widths is None or in_channels is None:
        raise CheckpointError(f"{str(path)!r} is a bare state_dict without a header: give the widths "
                              "(--widths c1,c2,c3) and the dataset it was trained on")
    hooks = GanomalyHooks(in_channels=int(in_channels))
    gan = hooks.build_gan(widths)
    try:
        load_weights(gan, state_dict, what=f"{what} ({path})")
    except CheckpointError as err:
        hint = ""
        if header.get("widths") is not None:
            hint = (f" (the file's header says: {header.get('role', 'model')} of method {header.get('method')!r}, "
                    f"widths {list(header['widths'])}, {header.get('in_channels')} channel(s); expected: widths "
                    f"{list(widths)}, {in_channels} channel(s))")
        raise CheckpointError(f"{err}{hint}") from None
    return gan, header


# --- images ---------------------------------------------------------------------------------------------------


def load_image_folder(folder: str | Path, channels: int) -> tuple[torch.Tensor, list[str]]:
    """PNG/JPEG/BMP/TIFF files of ``folder`` (sorted by name) as (N, channels, 32, 32) in [-1, 1], and their
    paths (``folder/name``).

    Decoded as a folder dataset's images (:func:`gankd_ganomaly.folder.read_images`): 8- or 16-bit values divided
    by their bit depth's maximum, converted to ``channels`` (1 gray, 3 colour), resized to 32x32 (bilinear), so
    they match the training data. A missing folder, a folder without images, or a file that cannot be read
    raises a named error giving the path.
    """
    from .folder import list_images, read_images

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist")
    files = list_images(folder)
    if not files:
        raise ValueError(f"image folder {str(folder)!r} has no {'/'.join(IMAGE_SUFFIXES)} files")
    images, _ = read_images(files, channels, IMAGE_SIZE)
    return images, [str(p) for p in files]


# --- the run ----------------------------------------------------------------------------------------------------


def run(cfg: RunConfig, data: OneClassData, teacher: GAN | None = None, *, verbose: bool = True,
        log_prefix: str = "", callbacks: Sequence[gankd.Callback] = (), out_dir: str | Path | None = None,
        resume: bool = False, tensorboard: bool = False,
        schedule: gankd.Schedule | None = None) -> tuple[dict, GAN]:
    """Execute ``cfg.method`` on ``data``; returns (result record, the trained GAN).

    For a student method, ``teacher`` is a trained teacher; it is deep-copied, so stages
    that fine-tune the teacher (KDGAN-3/4) never change the caller's model. AUROC is
    measured on the test split every ``eval_every`` epochs and at each stage's end; the
    reported ``auroc_last`` is the last epoch's, never the best. Global RNGs are seeded
    from ``cfg.seed``, so the same config gives the same result.

    With ``out_dir``: writes ``config.yaml`` (the resolved config), then after each epoch
    ``history.json``, ``metrics.csv`` and ``checkpoint.pt`` (the engine's full state, atomically),
    and at the end ``model.pt`` (:func:`save_model`) and ``record.json``. ``resume=True``
    continues from ``out_dir/checkpoint.pt`` when it exists (refusing, with :class:`ConfigError`,
    a checkpoint whose config differs from ``cfg``), ending with the weights and metrics of an
    uninterrupted run. ``tensorboard=True`` also logs scalars to ``out_dir/tensorboard``.
    While it runs, ``out_dir`` is locked (:class:`gankd.FolderLock`): a second run on the same folder raises
    :class:`gankd.FolderLockedError` naming this one; temporary files a killed run left there are removed.
    ``callbacks`` run after the built-in ones. ``schedule`` replaces the method's schedule (a study of
    custom structures or distillation losses); the record then names the recipe ``"custom"``.
    """
    check_device(cfg.device)
    if cfg.dataset == FOLDER and cfg.channels is None:
        cfg = cfg.replace(channels=data.channels)  # a folder's channel count is its images'
    kwargs = dict(verbose=verbose, log_prefix=log_prefix, callbacks=callbacks, out_dir=out_dir, resume=resume,
                  tensorboard=tensorboard, schedule=schedule)
    if out_dir is None:
        return _run(cfg, data, teacher, **kwargs)
    with gankd.FolderLock(out_dir):
        gankd.remove_stale_temporaries(out_dir, RUN_FILES)
        return _run(cfg, data, teacher, **kwargs)


def _run(cfg: RunConfig, data: OneClassData, teacher: GAN | None = None, *, verbose: bool = True,
         log_prefix: str = "", callbacks: Sequence[gankd.Callback] = (), out_dir: str | Path | None = None,
         resume: bool = False, tensorboard: bool = False,
         schedule: gankd.Schedule | None = None) -> tuple[dict, GAN]:
    hooks = make_hooks(cfg)
    recipe = cfg.recipe if schedule is None else "custom"
    schedule = schedule if schedule is not None else cfg.schedule()
    is_teacher_run = cfg.method == "teacher"
    validate_images(data.train, cfg.in_channels, what=f"{cfg.dataset} train images")
    skip_auroc = auroc_skip_reason(data)
    if len(data.test):
        validate_images(data.test, cfg.in_channels, what=f"{cfg.dataset} test images")
    if schedule.needs_teacher and not is_teacher_run and teacher is None:
        raise ValueError(f"method {cfg.method!r} distils from a teacher: pass a trained teacher GAN")
    out = Path(out_dir) if out_dir is not None else None
    if tensorboard and out is None:
        raise ValueError("tensorboard=True needs out_dir (the logs go to out_dir/tensorboard)")
    ckpt = None
    if out is not None and resume and (out / "checkpoint.pt").exists():
        ckpt = load_checkpoint(out / "checkpoint.pt")
        saved = (ckpt.get("metadata") or {}).get("config")
        diffs = config_differences(saved or {}, cfg.to_dict())
        if diffs:
            raise ConfigError(f"cannot resume {str(out / 'checkpoint.pt')!r}: it was written with another config "
                              f"({'; '.join(diffs)}). Resume with the saved config ({out / 'config.yaml'}) or "
                              "start the new config in another output folder")

    # the threshold's calibration images: a held-out share of the normal train images (deterministic in the seed),
    # or, with a share of 0 (the built-in datasets' default), the training images themselves
    share = cfg.resolved_calibration_share
    train_idx, calib_idx = calibration_split(len(data.train), share, cfg.seed)
    train_images = data.train[train_idx] if len(calib_idx) else data.train
    calib_images = data.train[calib_idx] if len(calib_idx) else data.train

    gankd.seed_everything(cfg.seed)
    if is_teacher_run:
        trained = build_gan(hooks, cfg.teacher_widths, cfg.seed)
        engine_teacher, engine_student = trained, None
    else:
        trained = build_gan(hooks, cfg.student_widths, cfg.seed + 1)
        engine_teacher = copy.deepcopy(teacher) if schedule.needs_teacher else None
        engine_student = trained

    def metrics(engine: DistillationEngine) -> dict[str, float]:
        return {"auroc": evaluate_auroc(hooks, trained, data.test, data.test_labels,
                                        batch_size=cfg.eval_batch_size, bn_mode=cfg.bn_mode)}

    all_callbacks: list[gankd.Callback] = [] if skip_auroc else [EvaluationCallback(metrics, every=cfg.eval_every)]
    if out is not None:
        cfg.save(out / "config.yaml")
        all_callbacks += [JSONHistory(out / "history.json"), CSVLogger(out / "metrics.csv")]
        if tensorboard:
            all_callbacks.append(TensorBoardLogger(out / "tensorboard"))
        all_callbacks.append(CheckpointCallback(out / "checkpoint.pt"))  # last: it holds the epoch's metrics
    if verbose:
        all_callbacks.append(auto_progress(prefix=log_prefix))
    all_callbacks += list(callbacks)
    widths = {who: gan.generator.widths for who, gan in (("teacher", engine_teacher), ("student", engine_student))
              if gan is not None}  # the networks' own widths: a teacher passed in may differ from cfg.teacher_widths
    engine = DistillationEngine(hooks, engine_teacher, engine_student, device=cfg.device, callbacks=all_callbacks,
                                metadata={"config": cfg.to_dict(), "producer": "gankd_ganomaly.experiment.run"},
                                channels_last=channels_last_networks(cfg, widths), compile=cfg.compile)
    batches = ShuffledBatches(train_images, cfg.batch_size, seed=cfg.seed)
    start = time.perf_counter()
    history = engine.fit(schedule, batches, resume=ckpt)
    wall_s = time.perf_counter() - start
    counts = count_generator(cfg.in_channels, cfg.trained_widths)
    calib_scores = anomaly_scores(hooks, trained, calib_images, batch_size=cfg.eval_batch_size, bn_mode=cfg.bn_mode)
    threshold = calibrate_threshold(calib_scores, cfg.target_fpr)
    calibration = {
        "value": threshold, "target_fpr": cfg.target_fpr, "bn_mode": cfg.bn_mode,
        "calibration_images": len(calib_images),
        "calibrated_on": "held-out train images" if len(calib_idx) else "training images (no held-out share)",
        "fpr_on_calibration": float((calib_scores.double() > threshold).double().mean()),
        "rule": "novel if score > value",
    }
    if skip_auroc and verbose:
        print(f"{log_prefix}note: AUROC not measured: {skip_auroc}", flush=True)
    record = {
        "dataset": cfg.dataset, "normal_class": cfg.normal_class, "class_name": data.class_name,
        "method": cfg.method, "recipe": recipe, "seed": cfg.seed, "schedule": schedule.to_dict(),
        "batch_size": cfg.batch_size, "lr": cfg.lr, "bn_mode_at_test": cfg.bn_mode,
        "auroc_last": history[-1]["metrics"].get("auroc"),
        "auroc_per_epoch": [h["metrics"].get("auroc") for h in history],
        "auroc_skipped": skip_auroc,
        "threshold": calibration, "train_images": len(train_images),
        "params": counts["params"], "flops": counts["flops"], "wall_s": wall_s,
        "resumed_from_epoch": ckpt["global_epoch"] if ckpt is not None else None,
        "discriminator_resets": hooks.discriminator_resets, "data_source": data.source,
        "version": gankd.__version__, "config": cfg.to_dict(), "history": history,
    }
    if out is not None:
        save_json(out / "history.json", history)  # complete even when a resumed run had no epoch left
        CSVLogger(out / "metrics.csv").write(history)
        save_model(out / "model.pt", trained, cfg, threshold=calibration)
        save_json(out / "record.json", record)
    return record, trained


def save_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    gankd.atomic_write_text(path, json.dumps(obj, indent=1) + "\n")
