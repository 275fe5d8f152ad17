"""Loading a dataset by name: one normal class (:func:`load_one_class`) or every class (:func:`load_labelled`).

Protocol: one class of a 10-class dataset is "normal". The model trains on the normal-class images of the train
split only, and is scored on the whole test split, where every image of another class is a novelty (label 1).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from . import builtin  # noqa: F401 (registers the built-in datasets)
from ..networks import IMAGE_SIZE, check_image_size
from .containers import LabelledData, OneClassData
from .registry import FOLDER, DatasetSpec, dataset_spec


def load_one_class(
    dataset: str,
    normal_class: int = 0,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    channels: int | None = None,
    image_size: int = IMAGE_SIZE,
) -> OneClassData:
    """Load ``dataset`` with ``normal_class`` as the normal class (see :class:`OneClassData` for shapes).

    ``root`` defaults to ``$GANKD_DATA_ROOT``, else ``~/.cache/gankd/data``; ``digits`` needs no files.
    With ``download=True``, files that are not found are downloaded into ``root`` with torchvision first.
    ``dataset="folder"``: your own images under ``root`` (required), normal class 0 ("good"), ``channels``
    1, 3 or None (read from the images); see :func:`gankd_ganomaly.data.folder.load_folder`.
    ``image_size`` (32, 64 or 128): every image is resized to it (bilinear, from the files' own pixels).
    """
    image_size = check_image_size(image_size)
    if dataset == FOLDER:
        if isinstance(normal_class, bool) or normal_class != 0:
            raise ValueError(f"a folder dataset has one normal class, 0 (its train/good images); got "
                             f"normal_class={normal_class!r}: leave it out")
        if root is None:
            raise ValueError("dataset 'folder' needs its root folder (--data-root ROOT, data_root in a config): "
                             "ROOT/train/good/* normal images, ROOT/test/good/* and ROOT/test/<defect>/* test images")
        if download:
            raise ValueError("download does not apply to a folder dataset: its images are yours")
        from .folder import load_folder

        return load_folder(root, channels, size=image_size)
    spec = dataset_spec(dataset)
    if channels is not None and channels != spec.channels:
        raise ValueError(f"dataset {dataset!r} has {spec.channels}-channel images; channels={channels!r} "
                         "applies to folder datasets only")
    num_classes = spec.num_classes
    if isinstance(normal_class, bool) or not isinstance(normal_class, (int, np.integer)) or not (
        0 <= normal_class < num_classes
    ):
        raise ValueError(
            f"normal_class must be an integer in [0, {num_classes - 1}] for dataset {dataset!r}; got {normal_class!r}"
        )
    normal_class = int(normal_class)

    train_x, _, test_x, test_y, source = _load(spec, root, normal_class, download, image_size)

    if len(train_x) == 0:
        raise ValueError(
            f"normal_class={normal_class} ({spec.class_names[normal_class]!r}) has no training samples in "
            f"{source}; expected at least one image of that class in the train split"
        )
    return OneClassData(
        dataset=dataset,
        normal_class=normal_class,
        train=train_x,
        test=test_x,
        test_labels=torch.from_numpy((test_y != normal_class).astype(np.int64)),
        source=source,
    )


def _load(spec: DatasetSpec, root, normal_class: int | None, download: bool, image_size: int) -> tuple:
    """``spec.load`` at ``image_size`` (a loader registered without ``size=`` is only called at 32)."""
    if image_size == IMAGE_SIZE:
        return spec.load(root, normal_class, download)
    return spec.load(root, normal_class, download, size=image_size)


def load_labelled(dataset: str, root: str | os.PathLike[str] | None = None, download: bool = False,
                  image_size: int = IMAGE_SIZE) -> LabelledData:
    """All classes of both splits, from the same files, layouts and preprocessing as :func:`load_one_class`."""
    if dataset == FOLDER:
        raise ValueError("load_labelled reads the built-in datasets; a folder dataset has one class: "
                         "use load_one_class")
    train_x, train_y, test_x, test_y, source = _load(dataset_spec(dataset), root, None, download,
                                                     check_image_size(image_size))
    as_labels = lambda y: torch.from_numpy(np.asarray(y, dtype=np.int64).copy())  # noqa: E731 (IDX arrays are read-only)
    return LabelledData(dataset, train_x, as_labels(train_y), test_x, as_labels(test_y), source)
