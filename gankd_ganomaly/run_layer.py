"""GANomaly for ``gankd train``: the data and evaluation factories a run config names.

    family: ganomaly                      # the gankd.families entry point (gankd_ganomaly.hooks:GanomalyHooks)
    family_args: {in_channels: 1}
    data: {factory: gankd_ganomaly.run_layer:one_class_batches, args: {dataset: digits, normal_class: 3}}
    evaluate: {factory: gankd_ganomaly.run_layer:auroc_metric, args: {dataset: digits, normal_class: 3}}

The image size is set once, in ``family_args`` (``{in_channels: 1, image_size: 64}``): ``gankd train`` gives the
data factory the family's hooks, so :func:`one_class_batches` resizes the images to the networks' size, and
``auroc_metric`` reads it from the hooks too. An ``image_size`` in the data's args is refused when it differs
from the family's, naming both.
"""
from __future__ import annotations

from typing import Callable

from gankd import GAN, ShuffledBatches

from .data import load_one_class
from .evaluation import evaluate_auroc
from .hooks import GanomalyHooks


def one_class_batches(dataset: str, normal_class: int, batch_size: int = 32, seed: int = 0, root: str | None = None,
                      max_train_images: int | None = None, image_size: int | None = None,
                      hooks: GanomalyHooks | None = None) -> ShuffledBatches:
    """Seeded, resumable batches of the normal class's training images (the first ``max_train_images``),
    resized to the family's ``image_size`` (32, 64 or 128; ``hooks``, which ``gankd train`` passes).

    ``image_size`` is for a call without ``hooks`` (default 32); given with them, it must be theirs."""
    if hooks is not None and image_size is not None and image_size != hooks.image_size:
        raise ValueError(f"data.args.image_size {image_size!r} differs from family_args.image_size "
                         f"{hooks.image_size!r} (the networks' input size): set it once, in family_args, and remove it "
                         "from data.args")
    size = hooks.image_size if hooks is not None else (32 if image_size is None else image_size)
    train = load_one_class(dataset, normal_class, root=root, image_size=size).train
    return ShuffledBatches(train[:max_train_images] if max_train_images else train, batch_size, seed=seed)


def auroc_metric(hooks: GanomalyHooks, teacher: GAN | None, student: GAN | None, dataset: str, normal_class: int,
                 root: str | None = None, bn_mode: str = "eval") -> Callable[[object], dict[str, float]]:
    """Test AUROC of the network the run trains (the student when there is one)."""
    data = load_one_class(dataset, normal_class, root=root, image_size=hooks.image_size)
    trained = student if student is not None else teacher

    def metric(engine) -> dict[str, float]:
        return {"auroc": evaluate_auroc(hooks, trained, data.test, data.test_labels, bn_mode=bn_mode)}
    return metric
