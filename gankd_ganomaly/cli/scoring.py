"""``evaluate`` and ``score``: AUROC, the decision threshold's rates, pictures, per-image scores.

Both score with a model file (the eager networks) or with an exported ``.onnx`` scorer (through onnxruntime,
:class:`~gankd_ganomaly.deploy.OnnxScorer`): :func:`_load_scorer` gives either as one :class:`_Scorer`.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from gankd.run import set_threads

from .options import CLIError, _check_output_file, resolve_config


# what evaluate and score use of a config; the other fields describe training and are refused if changed
SCORING_FIELDS = ("dataset", "normal_class", "bn_mode", "eval_batch_size", "data_root", "download", "device")


def _refuse_unused_scoring_fields(args: argparse.Namespace, base: dict, cfg) -> None:
    """--set of a training field is refused; so is a --config whose training fields differ from the model's
    (a run's own config.yaml passes: its fields are the model's)."""
    from ..experiment import RunConfig, read_config_file

    for item in args.set or []:
        key = item.partition("=")[0].strip().partition(".")[0]
        if key not in SCORING_FIELDS:
            raise CLIError(f"--set {item} does not apply to {args.command}: it only reads "
                           f"{', '.join(SCORING_FIELDS)}; {key} is fixed by the trained model")
    if args.config:
        saved, now = RunConfig.from_dict(base).to_dict(), cfg.to_dict()
        changed = [k for k in read_config_file(args.config)
                   if k not in SCORING_FIELDS and k != "teacher_checkpoint" and saved.get(k) != now.get(k)]
        if changed:
            raise CLIError(f"--config {args.config} sets {', '.join(changed)}, which {args.command} does not use "
                           f"(the trained model fixes them; it reads only {', '.join(SCORING_FIELDS)}): remove them")


def _load_for_scoring(args: argparse.Namespace):
    """(config, gan, hooks, header) for evaluate/score: the checkpoint's config, then --config/flags/--set."""
    from ..experiment import check_device, load_model, read_model_file
    from ..hooks import GanomalyHooks

    header, _ = read_model_file(args.checkpoint)
    base = dict(header.get("config") or {})
    base.pop("teacher_checkpoint", None)
    # the image size is the model's: its file says it (a bare state_dict: --image-size, else 32)
    file_size, given = header.get("image_size"), getattr(args, "model_image_size", None)
    if file_size is not None and given is not None and int(given) != int(file_size):
        raise CLIError(f"--image-size {given} conflicts with {args.checkpoint}: it is a model for {file_size}x"
                       f"{file_size} images (images are resized to its size); remove --image-size")
    size = int(file_size or given or 32)
    base["image_size"] = size
    cfg = resolve_config(args, base)
    _refuse_unused_scoring_fields(args, base, cfg)
    if args.widths and header.get("widths") and list(args.widths) != list(header["widths"]):
        raise CLIError(f"--widths {','.join(map(str, args.widths))} does not apply: {args.checkpoint} has a header "
                       f"that gives its widths ({','.join(map(str, header['widths']))}); --widths is for a bare "
                       "state_dict only")
    check_device(cfg.device)
    widths = args.widths or header.get("widths")
    in_channels = header.get("in_channels", cfg.in_channels)
    gan, header = load_model(args.checkpoint, widths=widths, in_channels=in_channels, image_size=cfg.image_size)
    gan = gan.to(cfg.device)
    return cfg, gan, GanomalyHooks(in_channels=in_channels, image_size=cfg.image_size), header


@dataclass
class _Scorer:
    """What evaluate/score need of a trained model: its config, ``score(images) -> (N,)`` and its threshold."""
    cfg: Any
    score: Callable[[torch.Tensor], torch.Tensor]
    in_channels: int
    image_size: int
    threshold: float | None
    threshold_source: str
    info: dict = field(default_factory=dict)  # method, widths, target_fpr for the JSON record
    gan: Any = None  # the eager GAN (model files only: --plots draws its reconstructions)
    hooks: Any = None


def _load_scorer(args: argparse.Namespace) -> _Scorer:
    """The model of ``--checkpoint``: an exported ``.onnx`` file, else a model file (see :func:`_load_for_scoring`)."""
    if Path(args.checkpoint).suffix == ".onnx":
        return _load_onnx_scorer(args)
    from ..evaluation import anomaly_scores

    cfg, gan, hooks, header = _load_for_scoring(args)
    threshold, source = _threshold(args, header)
    return _Scorer(cfg, lambda images: anomaly_scores(hooks, gan, images, batch_size=cfg.eval_batch_size,
                                                      bn_mode=cfg.bn_mode),
                   hooks.in_channels, hooks.image_size, threshold, source,
                   {"method": header.get("method"), "widths": list(gan.generator.widths),
                    "target_fpr": (header.get("threshold") or {}).get("target_fpr")}, gan, hooks)


def _load_onnx_scorer(args: argparse.Namespace) -> _Scorer:
    """An exported ``.onnx`` scorer run by onnxruntime: the file fixes the network, its channels and image size
    (its declared input); the side file ``FILE.onnx.json`` written by the export gives the dataset, class and
    threshold. Scoring is in eval mode on the CPU."""
    from ..data import ALL_DATASETS
    from ..deploy import OnnxScorer

    for option, dest in (("--widths", "widths"), ("--image-size", "model_image_size")):
        if getattr(args, dest, None) is not None:
            raise CLIError(f"{option} does not apply to {args.checkpoint}: an .onnx scorer fixes its network and "
                           f"image size; remove {option}")
    scorer = OnnxScorer(args.checkpoint, threads=args.threads)
    meta = scorer.metadata
    base: dict[str, Any] = {"image_size": scorer.image_size}
    if meta.get("dataset") in ALL_DATASETS:
        base["dataset"] = meta["dataset"]
        if meta.get("normal_class") is not None:
            base["normal_class"] = int(meta["normal_class"])
    elif not getattr(args, "images", None) and not hasattr(args, "dataset"):
        raise CLIError(f"{args.checkpoint} has no side file {args.checkpoint}.json naming its dataset: give "
                       "--dataset (and --normal-class), or --images DIR")
    if base.get("dataset", getattr(args, "dataset", None)) == "folder":
        base["channels"] = scorer.in_channels
    cfg = resolve_config(args, base)
    _refuse_unused_scoring_fields(args, base, cfg)
    if cfg.bn_mode != "eval":
        raise CLIError(f"--bn-mode {cfg.bn_mode} does not apply to {args.checkpoint}: an exported scorer uses the "
                       "running batch-norm statistics (eval); score the model file for another mode")
    if cfg.device != "cpu":
        raise CLIError(f"--device {cfg.device} does not apply to {args.checkpoint}: .onnx scorers run on the CPU "
                       "(onnxruntime); remove --device")
    if getattr(args, "threshold", None) is not None:
        threshold, source = float(args.threshold), "--threshold"
    elif meta.get("threshold") is not None:
        threshold = float(meta["threshold"])
        source = f"calibrated at training, target FPR {meta.get('target_fpr')} (from {args.checkpoint}.json)"
    else:
        threshold = None
        source = f"none: {args.checkpoint} has no calibrated threshold in its side file; give --threshold"
    return _Scorer(cfg, lambda images: scorer(images, batch_size=cfg.eval_batch_size), scorer.in_channels,
                   scorer.image_size, threshold, source,
                   {"method": meta.get("method"), "widths": meta.get("widths"), "target_fpr": meta.get("target_fpr"),
                    "runtime": "onnxruntime"})


def _check_channels(cfg, in_channels: int, checkpoint: str) -> None:
    from ..data import InvalidImagesError

    if cfg.in_channels != in_channels:
        raise InvalidImagesError(f"checkpoint {checkpoint!r} takes {in_channels}-channel images but dataset "
                                 f"{cfg.dataset!r} has {cfg.in_channels}-channel images")


def _threshold(args: argparse.Namespace, header: dict) -> tuple[float | None, str]:
    """The decision threshold (``--threshold``, else the model file's calibrated one) and where it comes from."""
    if getattr(args, "threshold", None) is not None:
        return float(args.threshold), "--threshold"
    calibrated = header.get("threshold") or {}
    if "value" in calibrated:
        return float(calibrated["value"]), (f"calibrated on {calibrated.get('calibration_images')} "
                                            f"{calibrated.get('calibrated_on')}, target FPR "
                                            f"{calibrated.get('target_fpr')}")
    return None, "none: the model file has no calibrated threshold (trained before thresholds); give --threshold"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..data import validate_images
    from ..evaluation import auroc, rates_at_threshold
    from ..experiment import auroc_skip_reason, load_run_data, save_json

    set_threads(args.threads)
    _check_output_file(args.json, "--json", "eval.json")
    if args.plots and Path(args.plots).exists() and not Path(args.plots).is_dir():
        raise CLIError(f"--plots {args.plots} is a file: give a folder for the PNG files (created if missing)")
    model = _load_scorer(args)
    if args.plots and model.gan is None:
        raise CLIError(f"--plots draws the model's reconstructions, which {args.checkpoint} (an exported scorer) "
                       "does not return: give the model file for --plots")
    cfg = model.cfg
    _check_channels(cfg, model.in_channels, args.checkpoint)
    cfg, data = load_run_data(cfg)
    skip = auroc_skip_reason(data)
    if skip:
        raise CLIError(f"cannot evaluate {args.checkpoint} on {data.source}: {skip}")
    validate_images(data.test, model.in_channels, what=f"{cfg.dataset} test images", image_size=model.image_size)
    scores = model.score(data.test)
    value = auroc(scores, data.test_labels)
    threshold, threshold_source = model.threshold, model.threshold_source
    rates = rates_at_threshold(scores, data.test_labels, threshold) if threshold is not None else \
        {"fpr_at_threshold": None, "tpr_at_threshold": None}
    result = {"auroc": value, "threshold": threshold, **rates, "threshold_source": threshold_source,
              "target_fpr": model.info.get("target_fpr"),
              "checkpoint": str(args.checkpoint), "dataset": cfg.dataset,
              "normal_class": cfg.normal_class, "class_name": data.class_name, "bn_mode": cfg.bn_mode,
              "test_images": len(data.test), "novel_images": int(data.test_labels.sum()),
              "method": model.info.get("method"), "widths": model.info.get("widths"), "image_size": model.image_size}
    if "runtime" in model.info:
        result["runtime"] = model.info["runtime"]
    print(f"AUROC {value:.4f}: {args.checkpoint} on {cfg.dataset} test split, normal class {cfg.normal_class} "
          f"({data.class_name}), {len(data.test)} images, bn_mode {cfg.bn_mode}")
    if threshold is not None:
        print(f"at threshold {threshold:.6g} ({threshold_source}): false-positive rate "
              f"{rates['fpr_at_threshold']:.4f}, true-positive rate {rates['tpr_at_threshold']:.4f}")
    else:
        print(f"threshold: {threshold_source}")
    if args.plots:
        from ..evaluation.plots import write_evaluation_plots

        result["plots"] = write_evaluation_plots(args.plots, model.hooks, model.gan, data.test, data.test_labels,
                                                 scores, threshold, bn_mode=cfg.bn_mode, auroc=value)
        print(f"wrote {', '.join(result['plots'])}", file=sys.stderr)
    if args.json:
        save_json(args.json, result)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from ..data import validate_images
    from ..data.folder import load_image_folder
    from ..experiment import load_run_data

    set_threads(args.threads)
    _check_output_file(args.output, "--output", "scores.csv")
    if args.images:
        given = [option for option, dest in (("--split", "split"), ("--dataset", "dataset"),
                                             ("--normal-class", "normal_class"), ("--data-root", "data_root"),
                                             ("--download", "download")) if getattr(args, dest, None) is not None]
        if given:
            one = len(given) == 1
            raise CLIError(f"{', '.join(given)} {'does' if one else 'do'} not apply with --images, which scores the "
                           f"folder's images: remove {'it' if one else 'them'}, or drop --images to score a dataset "
                           "split")
    model = _load_scorer(args)
    cfg, threshold, threshold_source = model.cfg, model.threshold, model.threshold_source
    if args.images:
        images, paths = load_image_folder(args.images, model.in_channels, size=model.image_size)
        rows = [{"path": p} for p in paths]
        what = f"images of {args.images}"
    else:
        _check_channels(cfg, model.in_channels, args.checkpoint)
        cfg, data = load_run_data(cfg)
        split = args.split or "test"
        if split == "test":
            images, labels, files = data.test, data.test_labels.tolist(), data.test_files
        else:
            images, labels, files = data.train, [0] * len(data.train), data.train_files
        if len(images) == 0:
            raise CLIError(f"the {split} split of {data.source} has no images to score")
        rows = [{"path": f} for f in files] if files else [{"index": i} for i in range(len(images))]
        for row, lab in zip(rows, labels):
            row["label"] = lab
        what = f"{cfg.dataset} {split} images"
    validate_images(images, model.in_channels, what=what, image_size=model.image_size)
    scores = model.score(images)
    bad = (~torch.isfinite(scores)).nonzero().flatten().tolist()
    if bad:
        raise FloatingPointError(f"{len(bad)} of {len(scores)} scores of {args.checkpoint} are NaN/Inf (the first: "
                                 f"{rows[bad[0]]}): the model's outputs overflow; nothing was written")
    buffer = io.StringIO()
    fieldnames = [*rows[0], "score"] + (["is_novel"] if threshold is not None else [])
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    for row, score in zip(rows, scores.tolist()):
        decision = {"is_novel": int(score > threshold)} if threshold is not None else {}
        writer.writerow({**row, "score": repr(score), **decision})
    if threshold is None:
        print(f"note: no is_novel column: threshold {threshold_source}", file=sys.stderr)
    if args.output in (None, "-"):
        sys.stdout.write(buffer.getvalue())
    else:
        from gankd import atomic_write_text

        atomic_write_text(args.output, buffer.getvalue())
        novel = f", {sum(int(s > threshold) for s in scores.tolist())} novel at threshold {threshold:.6g}" \
            if threshold is not None else ""
        print(f"wrote {len(rows)} scores to {args.output}{novel}", file=sys.stderr)
    return 0
