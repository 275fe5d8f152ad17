"""Parameter and FLOP counts of GANomaly generators with fvcore.

Counted as the paper counts: the generator only (the part that scores), eval mode, one
32x32 image, one multiply-add = one flop (fvcore's convention; batch norm counts one
flop per element in eval mode, element-wise activations are not counted).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch

from ..data.registry import datasets, dataset_spec
from ..networks import IMAGE_SIZE, LATENT_DIM, TEACHER_WIDTHS, GanomalyGenerator


def paper_student_datasets() -> tuple[str, ...]:
    """The datasets whose student the paper reports (Table 4)."""
    return tuple(d for d in datasets() if dataset_spec(d).paper_student)


def count_module(model: torch.nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """``{"params": ..., "flops": ...}`` of ``model`` (put in eval mode) on ``example_input``, with fvcore;
    fvcore's import-time and tracer warnings are silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore/iopath deprecation warnings, tracer warnings
        from fvcore.nn import FlopCountAnalysis, parameter_count

        model = model.eval()
        analysis = FlopCountAnalysis(model, example_input)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops = int(analysis.total())
    return {"params": int(parameter_count(model)[""]), "flops": flops}


def count_generator(in_channels: int, widths: Sequence[int], latent_dim: int = LATENT_DIM) -> dict[str, int]:
    """Counts of a freshly built GANomaly generator for one (C, 32, 32) image."""
    return count_module(GanomalyGenerator(in_channels, widths, latent_dim),
                        torch.zeros(1, in_channels, IMAGE_SIZE, IMAGE_SIZE))


def compression_report(dataset: str) -> dict:
    """Teacher (64-128-256) vs the dataset's paper student, both at the dataset's channel count."""
    if dataset not in paper_student_datasets():
        raise ValueError(f"dataset must be one of {sorted(paper_student_datasets())}, got {dataset!r}")
    spec = dataset_spec(dataset)
    channels = spec.channels
    teacher = count_generator(channels, TEACHER_WIDTHS)
    student = count_generator(channels, spec.student_widths)
    return {
        "dataset": dataset, "in_channels": channels,
        "teacher_widths": list(TEACHER_WIDTHS), "student_widths": list(spec.student_widths),
        "teacher": teacher, "student": student,
        "params_ratio": teacher["params"] / student["params"],
        "flops_ratio": teacher["flops"] / student["flops"],
    }
