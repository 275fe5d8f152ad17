"""One-class data for GANomaly: the dataset registry, the built-in loaders and your own image folders.

``registry`` (what each dataset is), ``builtin`` (digits, MNIST, Fashion-MNIST, CIFAR-10 readers),
``folder`` (ROOT/train/good, ROOT/test/<kind>), ``one_class`` (loading by name), ``containers`` (what loaders
return, and the image checks), ``cifar_prep`` (CIFAR-10 copies made from the offline sources).
"""
from .containers import (DatasetFileError, DatasetNotFoundError, InvalidImagesError, LabelledData, OneClassData,
                         UnsafeDatasetFileError, validate_images)
from .one_class import load_labelled, load_one_class  # imports .builtin, which registers the built-in datasets
from .registry import FOLDER, DatasetSpec, class_names, dataset_spec, datasets, register

DATASETS: tuple[str, ...] = datasets()
"""The built-in 10-class datasets (what sweeps and reports iterate)."""
ALL_DATASETS: tuple[str, ...] = (*DATASETS, FOLDER)
"""Every value the ``dataset`` option takes: the built-in ones and ``folder`` (your own images)."""

__all__ = ["ALL_DATASETS", "DATASETS", "FOLDER", "DatasetFileError", "DatasetNotFoundError", "DatasetSpec",
           "InvalidImagesError", "LabelledData", "OneClassData", "UnsafeDatasetFileError", "class_names",
           "dataset_spec", "datasets", "load_labelled", "load_one_class", "register", "validate_images"]
