"""Parameter and FLOP counts of GANomaly generators with fvcore.

Counted as the paper counts: the generator only (the part that scores), eval mode, one
image of the network's size (32x32 by default; 64x64 and 128x128 count the networks built with GANomaly's extra
pyramid blocks), one multiply-add = one flop (fvcore's convention; batch norm counts one
flop per element in eval mode, element-wise activations are not counted).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch

from ..data.registry import datasets, dataset_spec
from ..networks import (IMAGE_SIZE, LATENT_DIM, TEACHER_WIDTHS, GanomalyGenerator, check_image_size,
                        pyramid_widths)


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


def count_generator(in_channels: int, widths: Sequence[int], latent_dim: int = LATENT_DIM,
                    image_size: int = IMAGE_SIZE) -> dict[str, int]:
    """Counts of a freshly built GANomaly generator (for ``image_size``) on one (C, image_size, image_size) image."""
    image_size = check_image_size(image_size)
    return count_module(GanomalyGenerator(in_channels, widths, latent_dim, image_size),
                        torch.zeros(1, in_channels, image_size, image_size))


def compression_report(dataset: str, image_size: int = IMAGE_SIZE) -> dict:
    """Teacher (64-128-256) vs the dataset's paper student, both at the dataset's channel count and built for
    ``image_size`` (32, 64 or 128; above 32 both get GANomaly's pyramid blocks, see :func:`pyramid_widths`)."""
    if dataset not in paper_student_datasets():
        raise ValueError(f"dataset must be one of {sorted(paper_student_datasets())}, got {dataset!r}")
    image_size = check_image_size(image_size)
    spec = dataset_spec(dataset)
    channels = spec.channels
    teacher = count_generator(channels, TEACHER_WIDTHS, image_size=image_size)
    student = count_generator(channels, spec.student_widths, image_size=image_size)
    return {
        "dataset": dataset, "in_channels": channels, "image_size": image_size,
        "teacher_pyramid": list(pyramid_widths(TEACHER_WIDTHS, image_size)),
        "student_pyramid": list(pyramid_widths(spec.student_widths, image_size)),
        "teacher_widths": list(TEACHER_WIDTHS), "student_widths": list(spec.student_widths),
        "teacher": teacher, "student": student,
        "params_ratio": teacher["params"] / student["params"],
        "flops_ratio": teacher["flops"] / student["flops"],
    }
