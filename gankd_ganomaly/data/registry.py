"""The dataset registry: one entry per dataset, holding everything the rest of the adapter needs to know of it.

A :class:`DatasetSpec` names the dataset, its classes, its channel count, the default student widths and the
function that loads it; :mod:`gankd_ganomaly.data.builtin` registers digits, MNIST, Fashion-MNIST and CIFAR-10.
Your own images are the ``folder`` dataset (:mod:`gankd_ganomaly.data.folder`): one normal class ("good"), the
channel count read from the files, so it is not a registry entry (sweeps and reports iterate the entries).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gankd.registry import Registry

FOLDER = "folder"

@dataclass(frozen=True)
class DatasetSpec:
    """A built-in one-class dataset.

    ``load(root, normal_class, download)`` returns :data:`gankd_ganomaly.data.containers.Loaded` (``normal_class``
    None keeps every class of the train split) at 32x32; a loader that also takes ``size=`` (64, 128: the
    built-in ones do) is called with it for other image sizes, and resizes from the files' own pixels.
    ``student_widths`` are the default student's (c1, c2, c3); with ``paper_student`` the paper reports that
    student (Table 4). ``files``: whether the data is read from files under a root folder (digits is embedded in
    scikit-learn).
    """

    name: str
    display_name: str
    class_names: tuple[str, ...]
    channels: int
    student_widths: tuple[int, int, int]
    load: Callable[[str | Path | None, int | None, bool], tuple]
    paper_student: bool = True
    files: bool = True

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


DATASET_REGISTRY: Registry[DatasetSpec] = Registry("dataset")


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to :data:`DATASET_REGISTRY` (gankd's naming policy: a name is registered once; outside this
    package, name yours ``package.name``, which no built-in dataset takes). The owner named in messages is the
    module of ``spec.load``."""
    if spec.name == FOLDER:
        raise ValueError(f"{FOLDER!r} is the name of your own image folders (gankd_ganomaly.data.folder); "
                         "register the dataset under another name")
    try:
        DATASET_REGISTRY.register(spec.name, spec, source=spec.load)
    except KeyError as err:
        raise ValueError(err.args[0]) from None
    return spec


def datasets() -> tuple[str, ...]:
    """The registered datasets' names, in registration order."""
    return tuple(DATASET_REGISTRY.in_registration_order())


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry of ``name``; a ValueError lists the known datasets."""
    if name not in DATASET_REGISTRY:
        known = ", ".join(map(repr, (*datasets(), FOLDER)))
        raise ValueError(f"dataset must be one of {known}; got {name!r}")
    return DATASET_REGISTRY.get(name)


def class_names(dataset: str) -> tuple[str, ...]:
    """The class names of a dataset, and ``("good",)`` for a folder dataset (one normal class; every other test
    folder is novel)."""
    return ("good",) if dataset == FOLDER else dataset_spec(dataset).class_names
