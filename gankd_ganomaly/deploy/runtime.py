"""Scoring with an exported ONNX file through onnxruntime (the optional extra ``gankd[onnx]``).

:class:`OnnxScorer` is what ``gankd-ganomaly score --checkpoint model.onnx`` runs: images ``(N, C, S, S)``
float32 in [-1, 1] -> scores ``(N,)``, as the eager model's in eval mode (tested to 1e-4 of their scale). The
image shape comes from the file's declared input, the threshold from the side file ``PATH.json`` the export wrote.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .export import read_metadata
from .folded import check_scorer_input

ONNX_EXTRA = "pip install 'gankd[onnx]' (onnx, onnxscript, onnxruntime)"


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
        from gankd import MissingDependencyError

        raise MissingDependencyError(f"scoring an .onnx file needs onnxruntime, but importing it failed "
                                     f"({type(exc).__name__}: {exc}); install it with {ONNX_EXTRA}") from exc
    return onnxruntime


class OnnxScorer:
    """An onnxruntime session of an exported scorer (CPU), called like the TorchScript one.

    ``threads``: onnxruntime's intra-op threads (None: its default, every core). Raises ``ValueError`` naming
    the file when it is not an ONNX scorer of this package (another graph, a damaged or non-ONNX file).
    """

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        ort = _onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX scorer {str(self.path)!r} does not exist (export one with "
                                    "`gankd-ganomaly export MODEL.pt OUT.onnx`)")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: the session's notes are not the user's business
        if threads is not None:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types for unreadable graphs
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"cannot load ONNX scorer {str(self.path)!r}: it is damaged or not an ONNX file "
                             f"({first})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = inputs[0].shape if len(inputs) == 1 else None
        if shape is None or len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]) or len(outputs) != 1:
            raise ValueError(f"{str(self.path)!r} is not a gankd-ganomaly scorer: it should take one input "
                             f"images (N, C, S, S) and return scores (N,); it takes "
                             f"{[(i.name, i.shape) for i in inputs]}")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.in_channels, self.image_size = int(shape[1]), int(shape[2])
        self.metadata: dict = read_metadata(self.path) or {}

    def __call__(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Scores (N,) float32 of ``images`` (N, C, S, S) float32 in [-1, 1], ``batch_size`` images per run."""
        check_scorer_input(images, self.in_channels, self.image_size)
        chunks = [self.session.run([self.output_name], {self.input_name: chunk.contiguous().numpy()})[0]
                  for chunk in images.detach().cpu().split(batch_size)]
        return torch.from_numpy(np.concatenate(chunks) if chunks else np.zeros(0, np.float32))
