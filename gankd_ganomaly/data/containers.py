"""What the data layer hands to training and scoring: one-class data, labelled data, and the image checks.

Every image is float32 in [-1, 1] (the range of the generators' tanh output), (N, C, H, W) with H = W = the
model's image size. Data stays in one in-memory tensor: these datasets are small, and batching by indexing a
tensor avoids per-item decoding and DataLoader workers.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..networks import IMAGE_SIZE
from .registry import class_names


@dataclass(frozen=True, eq=False)  # eq=False: field-wise == on tensors is ambiguous; compare fields explicitly.
class OneClassData:
    """One normal class of a dataset, ready for training and scoring.

    ``train``: (N, C, S, S) float32 in [-1, 1], only normal-class images of the train split; S is the image size
    it was loaded at (:attr:`image_size`, 32 unless ``image_size`` was given to the loader).
    ``test``: (M, C, S, S) float32 in [-1, 1], the whole test split.
    ``test_labels``: (M,) int64, 0 = normal (class == ``normal_class``), 1 = novel.
    ``source``: which files / which split the images came from, for logs and reports.
    """

    dataset: str
    normal_class: int
    train: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    source: str
    # folder datasets only: each image's file, and each test image's folder name ("good" or the defect's)
    train_files: tuple[str, ...] = ()
    test_files: tuple[str, ...] = ()
    test_kinds: tuple[str, ...] = ()

    @property
    def channels(self) -> int:
        """Number of image channels (1 for the grey-scale datasets, 3 for CIFAR-10; a folder's from its images)."""
        return int(self.train.shape[1])

    @property
    def image_size(self) -> int:
        """Side of the (square) images: 32, 64 or 128, as loaded."""
        return int(self.train.shape[-1])

    @property
    def class_name(self) -> str:
        """Human-readable name of the normal class, e.g. ``"bag"`` or ``"3"``."""
        return class_names(self.dataset)[self.normal_class]


class DatasetNotFoundError(FileNotFoundError):
    """The files of a dataset are in none of the searched folders; the message lists them and how to get the files."""


class DatasetFileError(ValueError):
    """A dataset file is truncated, corrupted or not the kind of file expected; the message names the file."""


class UnsafeDatasetFileError(DatasetFileError, pickle.UnpicklingError):
    """A pickled dataset file names code to run when loaded; it was refused, nothing in it ran."""


class InvalidImagesError(ValueError):
    """Images the networks cannot take: not a float tensor, wrong shape, size or channel count, empty, or NaN/Inf."""


def validate_images(images: torch.Tensor, channels: int, what: str = "images", image_size: int = IMAGE_SIZE) -> None:
    """Raise :class:`InvalidImagesError` unless ``images`` is a non-empty float tensor (N, ``channels``,
    ``image_size``, ``image_size``) with finite values; the message names ``what``, the shape found, or the first
    image holding NaN/Inf."""
    if not isinstance(images, torch.Tensor):
        raise InvalidImagesError(f"{what} must be a torch.Tensor, got {type(images).__name__}")
    expected = f"(N, {channels}, {image_size}, {image_size})"
    if images.dim() != 4 or tuple(images.shape[2:]) != (image_size, image_size):
        raise InvalidImagesError(f"{what} have shape {tuple(images.shape)}; the network takes {expected}: "
                                 f"{channels}-channel images of {image_size}x{image_size} pixels")
    if images.shape[1] != channels:
        raise InvalidImagesError(f"{what} have {images.shape[1]} channel(s) (shape {tuple(images.shape)}) but the "
                                 f"network takes {channels}-channel images {expected}")
    if images.shape[0] == 0:
        raise InvalidImagesError(f"{what} are empty (shape {tuple(images.shape)})")
    if not images.is_floating_point():
        raise InvalidImagesError(f"{what} must be floating point in [-1, 1], got dtype {images.dtype}")
    finite = torch.isfinite(images)
    if not bool(finite.all()):
        bad_images = (~finite).flatten(1).any(dim=1).nonzero().flatten()
        first = int(bad_images[0])
        value = float(images[first][~finite[first]][0])
        raise InvalidImagesError(
            f"{what} contain {int((~finite).sum())} NaN/Inf value(s) in {len(bad_images)} image(s); the first is "
            f"image {first} (value {value}). Clean or drop these images: training on them makes every loss NaN"
        )


@dataclass(frozen=True, eq=False)
class LabelledData:
    """Both splits with every class (e.g. to train an unconditional GAN or a classifier on a dataset)."""

    dataset: str
    train: torch.Tensor         # (N, C, S, S) float32 in [-1, 1], S the image size (32 by default)
    train_labels: torch.Tensor  # (N,) int64 class indices
    test: torch.Tensor          # (M, C, S, S)
    test_labels: torch.Tensor   # (M,) int64 class indices
    source: str


# What each loader returns: normal-class train images, test images, test class labels (M,), source description.
Loaded = tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray, str]
"""(train images, their labels, test images, test labels, source); the train split holds only
``normal_class`` when one is given, every class when it is None."""


def to_model_range(images: np.ndarray, max_value: float, size: int = IMAGE_SIZE) -> torch.Tensor:
    """(N, C, H, W) values in [0, max_value] -> float32 (N, C, size, size) in [-1, 1] (bilinear resize, from the
    files' own pixels, if H, W differ from it)."""
    x = torch.from_numpy(np.array(images, dtype=np.float32))  # copy: the inputs are often read-only buffers
    x.div_(max_value).mul_(2.0).sub_(1.0)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    # Bilinear weights are convex, so this only removes float rounding past the ends.
    return x.clamp_(-1.0, 1.0).contiguous()
