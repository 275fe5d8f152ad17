"""Deployment export of a trained GANomaly generator: a self-contained scoring model.

The exported model takes images ``(N, C, S, S)`` in [-1, 1], S the model's image size (32, 64 or 128), and
returns the anomaly score of
:meth:`GanomalyHooks.score` in eval mode, shape ``(N,)``: the mean over the latent of
``(z1 - z2)^2``. It needs neither this package nor its networks to run: a TorchScript file loads
with ``torch.jit.load`` (Python or C++), an ONNX file with any ONNX runtime.

Two graphs can be exported (``optimize``):

* ``optimize=True`` (the TorchScript default): :class:`GanomalyScorer`, an inference-only rewrite
  with the same math, for CPU speed: every eval-mode batch norm is folded into the convolution before it; the
  encoder's last 4x4 convolution over a 4x4 map and the decoder's first 4x4 transposed convolution
  of a 1x1 map are written as the matrix products they are; each stride-2 transposed convolution
  takes the fastest of three equivalent forms for its width (the op itself, a 3x3 convolution +
  pixel shuffle, or a matrix product + col2im); the decoder's last layer and the second encoder's
  first convolution run on the four phases of x_hat (:class:`_PhaseTail`), so the image x_hat is
  never assembled; the 64x64 and 128x128 networks' pyramid blocks are rewritten like the others; tanh is
  ``2*sigmoid(2x) - 1``. The layout follows the widths (:func:`default_layout`, measured at 32x32):
  channels-last for networks 8 or more channels wide, and for networks at most 8 channels wide
  :class:`BatchLastScorer`, the same math with the batch as the innermost dimension, where every
  convolution is a few matrix products. Scores equal the eager model's up
  to float rounding (tested: within 1e-5 absolute and 1e-4 of their scale). ``benchmarks/``
  measures it (section ``scoring``).
* ``optimize=False``: the generator's own layers as they are (eval mode); the default for ONNX,
  whose runtimes do their own graph optimisation (see :func:`export_onnx`).

TorchScript files are frozen (weights are constants). Recent torch versions mark ``torch.jit`` as
deprecated in favour of ``torch.export``; it still works, and its files load from C++ as well.

Use :func:`export_model_file` to go from a saved model (``model.pt``, a run folder or a run's
``checkpoint.pt``) to an exported file; it is what a ``gankd-ganomaly export`` command would call.
"""
from __future__ import annotations

import contextlib
import copy
import errno
import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

import gankd
from gankd.functional import squared_error

from ..networks import GanomalyGenerator
from .batch_last import BatchLastScorer
from .folded import GanomalyScorer, _as_generator, check_scorer_input

EXPORT_FORMATS = ("torchscript", "onnx")


class _EagerScorer(nn.Module):
    """The generator's own (eval-mode) layers with the score on top; what ``optimize=False`` exports."""

    def __init__(self, generator: GanomalyGenerator) -> None:
        super().__init__()
        generator = copy.deepcopy(_as_generator(generator)).eval()
        self.encoder1, self.decoder, self.encoder2 = generator.encoder1, generator.decoder, generator.encoder2
        self.in_channels = int(generator.in_channels)
        self.image_size = int(generator.image_size)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_scorer_input(images, self.in_channels, self.image_size)
        z1 = self.encoder1(images)
        z2 = self.encoder2(self.decoder(z1))
        return squared_error(z1, z2)



LAYOUTS = ("standard", "channels_last", "batch_last")


def default_layout(generator: GanomalyGenerator) -> str:
    """The fastest scoring layout on CPU for these widths, measured in ``benchmarks/`` (batch 256, 1 and 2 threads).

    ``"channels_last"`` when every width is >= 8 (the teacher ~1.3x, the CIFAR-10 student 8-16-64 ~1.1x
    faster than the standard layout; batch-last is slower for them); ``"batch_last"``
    (:class:`BatchLastScorer`) when every width is <= 8 (the MNIST 2-4-8 and Fashion-MNIST 1-2-4
    students: ~1.6x and ~2x faster than the standard layout on 1 thread, ~1.1x and ~1.4x on 2);
    otherwise the standard (N, C, H, W) layout.
    """
    widths = generator.widths
    if max(widths) <= 8:
        return "batch_last"
    return "channels_last" if min(widths) >= 8 else "standard"


def scoring_module(gan_or_generator: Any, *, optimize: bool = True, layout: str | None = None) -> nn.Module:
    """An eval-mode ``nn.Module`` images -> scores (N,) for a GAN or its generator (weights copied).

    ``layout`` (``optimize=True`` only): one of :data:`LAYOUTS`, or None for :func:`default_layout`.
    """
    generator = _as_generator(gan_or_generator)
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS} or None, got {layout!r}")
    if not optimize:
        module: nn.Module = _EagerScorer(generator)
    else:
        layout = layout or default_layout(generator)
        module = BatchLastScorer(generator) if layout == "batch_last" else \
            GanomalyScorer(generator, channels_last=layout == "channels_last")
    return module.to(next(generator.parameters()).device).eval()


def _example_input(in_channels: int, batch: int = 2, device: torch.device | str = "cpu",
                   image_size: int = 32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return (torch.rand(batch, in_channels, image_size, image_size, generator=gen) * 2 - 1).to(device)


def _check_channels(generator: GanomalyGenerator, in_channels: int) -> None:
    if int(generator.in_channels) != int(in_channels):
        raise ValueError(f"in_channels={in_channels}, but the generator takes {generator.in_channels}-channel images")


# --- TorchScript --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_jit():
    """Recent torch (2.13 here) marks torch.jit deprecated (in favour of torch.export); it still works, and the
    TorchScript file is what C++/mobile runtimes load today, so its notices are not shown here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
        yield


def to_torchscript(gan_or_generator: Any, in_channels: int, *, optimize: bool = True,
                   layout: str | None = None) -> torch.jit.ScriptModule:
    """A TorchScript module whose ``forward(images)`` returns scores (N,); nothing is written."""
    generator = _as_generator(gan_or_generator)
    _check_channels(generator, in_channels)
    module = scoring_module(generator, optimize=optimize, layout=layout)
    device = next(generator.parameters()).device
    with torch.no_grad(), _quiet_jit():
        scripted = torch.jit.script(module)
        scripted = torch.jit.freeze(scripted.eval())  # weights become constants; no training-mode code
    # a frozen module keeps a forward that accepts any batch size; check it runs before handing it out
    with torch.inference_mode():
        scripted(_example_input(in_channels, device=device, image_size=generator.image_size))
    return scripted


METADATA_NAME = "gankd.json"  # the extra file of a TorchScript export holding the decision threshold


def export_torchscript(gan_or_generator: Any, in_channels: int, path: str | Path, *, optimize: bool = True,
                       layout: str | None = None, metadata: dict | None = None) -> Path:
    """Write a TorchScript scoring model to ``path``; load it with ``torch.jit.load(path)``.

    ``gan_or_generator``: a trained GANomaly :class:`gankd.GAN` or its generator (eval-mode
    statistics are used; the given model is not changed). ``metadata`` (JSON-serialisable, e.g. the threshold)
    is stored in the archive as the extra file :data:`METADATA_NAME` (read it with :func:`read_metadata`).
    Returns the path written.
    """
    import json

    path = Path(path)
    scripted = to_torchscript(gan_or_generator, in_channels, optimize=optimize, layout=layout)
    extra = {METADATA_NAME: json.dumps(metadata)} if metadata is not None else {}
    with _quiet_jit():
        _save_atomically(path, lambda tmp: torch.jit.save(scripted, tmp, _extra_files=extra))
    return path


def read_metadata(path: str | Path) -> dict | None:
    """The metadata written with an exported scorer (threshold, channels, ...): the side file ``PATH.json`` that
    every export writes, else (TorchScript) the archive's :data:`METADATA_NAME`; None if there is neither."""
    import json

    path = Path(path)
    side = path.with_name(path.name + ".json")
    if side.is_file():
        return json.loads(side.read_text())
    if path.suffix != ".onnx":
        extra = {METADATA_NAME: ""}
        with _quiet_jit():
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        return json.loads(extra[METADATA_NAME]) if extra[METADATA_NAME] else None
    return None


def _save_atomically(path: Path, save) -> None:
    """``save(tmp)`` (a path string) through :func:`gankd.atomic_write`; a ``path`` that is a folder is refused
    before any work."""
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file: give a file path such as model.ts", str(path))
    gankd.atomic_write(path, lambda tmp: save(str(tmp)))


# --- ONNX (optional: needs the onnx / onnxscript packages) ----------------------------------------------------------


def onnx_available() -> tuple[bool, str]:
    """``(True, "")`` if :func:`export_onnx` can run here, else ``(False, why)``."""
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
            missing.append(f"{name} ({type(exc).__name__}: {exc})")
    if missing:
        return False, "ONNX export needs the optional packages " + ", ".join(missing) + \
            "; install them with `pip install 'gankd[onnx]'` (or `pip install onnx onnxscript`)"
    return True, ""


def export_onnx(gan_or_generator: Any, in_channels: int, path: str | Path, *, optimize: bool = False,
                opset: int | None = None) -> Path:
    """Write an ONNX scoring model (input ``images`` (N, C, S, S), S the model's image size, output ``scores``
    (N,), dynamic N).

    Needs the optional ``onnx`` and ``onnxscript`` packages (raises :class:`gankd.MissingDependencyError`, an
    ``ImportError`` and ``RuntimeError``, naming them if absent);
    run the file with e.g. ``onnxruntime``. Returns the path written.

    By default the graph is the generator's own layers (standard Conv / ConvTranspose / BatchNorm
    ops): ONNX runtimes fold batch norm and choose their own kernels, and the rewrites of
    ``optimize=True`` target PyTorch's CPU kernels (measured with onnxruntime: the plain graph
    scores the students 1.1-1.5x faster, the teacher 1.05-1.25x slower). With ``optimize=True``
    the rewritten graph is exported without the phase-domain tail, whose in-place zeroing becomes
    scatter ops in ONNX.
    """
    ok, why = onnx_available()
    if not ok:
        from gankd import MissingDependencyError

        raise MissingDependencyError(why)
    generator = _as_generator(gan_or_generator)
    _check_channels(generator, in_channels)
    generator = copy.deepcopy(generator).cpu()
    # ONNX has no memory layouts: the (N, C, H, W) graph, without layout permutes
    module = GanomalyScorer(generator, False, phase_tail=False).eval() if optimize else _EagerScorer(generator)
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file: give a file path such as model.onnx", str(path))
    example = _example_input(in_channels, image_size=generator.image_size)
    kwargs: dict[str, Any] = {"input_names": ["images"], "output_names": ["scores"],
                              "dynamic_shapes": {"images": {0: torch.export.Dim("batch", min=1)}},
                              "dynamo": True, "external_data": False, "verbose": False}
    if opset is not None:
        kwargs["opset_version"] = opset
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporter's progress lines and deprecation notes
        program = torch.onnx.export(module, (example,), None, **kwargs)
    _save_atomically(path, program.save)
    return path


# --- from a saved model (what a CLI `export` command calls) ---------------------------------------------------------


def export_model_file(model_path: str | Path, out_path: str | Path, *, fmt: str | None = None,
                      optimize: bool | None = None, layout: str | None = None) -> dict:
    """Export the GAN saved at ``model_path`` (``model.pt``, a run folder, or a run's ``checkpoint.pt``).

    ``fmt``: ``"torchscript"`` or ``"onnx"``; by default from ``out_path``'s suffix (``.onnx`` ->
    ONNX, anything else TorchScript). ``optimize``: the rewritten graph (default: yes for TorchScript,
    no for ONNX, see :func:`export_onnx`). ``layout`` (rewritten TorchScript only): the graph's layout,
    by default :func:`default_layout`. Returns a small record (paths, format, layout, channels, widths, the
    model's calibrated ``threshold``), also written beside the export as ``OUT.json`` (``model.ts.json``), and,
    for TorchScript, inside the file (:func:`read_metadata`): the scorer returns scores; an image is novel when
    its score is greater than ``threshold``.
    """
    import json

    import gankd

    from ..experiment import load_model  # imported here: only this entry point needs model files

    out_path = Path(out_path)
    fmt = fmt or ("onnx" if out_path.suffix == ".onnx" else "torchscript")
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"fmt must be one of {EXPORT_FORMATS}, got {fmt!r}")
    if optimize is None:
        optimize = fmt == "torchscript"
    if layout is not None and not (fmt == "torchscript" and optimize):
        raise ValueError("layout applies to the rewritten TorchScript graph only "
                         f"(here: format {fmt!r}, optimize={optimize})")
    if out_path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"is a folder, not a file: give a file path such as "
                                f"{out_path / 'model.ts'}", str(out_path))
    if fmt == "onnx":
        ok, why = onnx_available()
        if not ok:  # before loading anything
            from gankd import MissingDependencyError

            raise MissingDependencyError(why)
    gan, header = load_model(model_path)  # refuses NaN/Inf weights: their scores would all be NaN
    in_channels, size = int(gan.generator.in_channels), int(gan.generator.image_size)
    calibrated = header.get("threshold") or {}
    metadata = {"format": "gankd-ganomaly-scorer", "in_channels": in_channels, "image_size": size,
                "input": f"float32 (N, {in_channels}, {size}, {size}) in [-1, 1]",
                "threshold": calibrated.get("value"), "target_fpr": calibrated.get("target_fpr"),
                "rule": "novel if score > threshold", "method": header.get("method"),
                "dataset": header.get("dataset"), "normal_class": header.get("normal_class"),
                "widths": list(gan.generator.widths)}
    if fmt == "onnx":
        export_onnx(gan, in_channels, out_path, optimize=optimize)
    else:
        if optimize:
            layout = layout or default_layout(gan.generator)
        export_torchscript(gan, in_channels, out_path, optimize=optimize, layout=layout, metadata=metadata)
    side = out_path.with_name(out_path.name + ".json")
    gankd.atomic_write_text(side, json.dumps(metadata, indent=1) + "\n")
    return {"source": str(model_path), "path": str(out_path), "format": fmt, "optimize": optimize,
            "layout": layout, "in_channels": in_channels, "image_size": size, "widths": list(gan.generator.widths),
            "role": header.get("role"), "method": header.get("method"), "dataset": header.get("dataset"),
            "threshold": calibrated.get("value"), "metadata": str(side)}
