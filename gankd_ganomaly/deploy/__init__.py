"""Deploying a GANomaly detector: standalone scoring models (``export``) and their fast CPU graphs
(``folded``: standard / channels-last; ``batch_last``: for networks a few channels wide), and
``runtime``: an exported ONNX file scored through onnxruntime."""
from .batch_last import BatchLastScorer
from .export import (EXPORT_FORMATS, LAYOUTS, METADATA_NAME, default_layout, export_model_file, export_onnx,
                     export_torchscript, onnx_available, read_metadata, scoring_module, to_torchscript)
from .folded import GanomalyScorer, check_scorer_input
from .runtime import OnnxScorer

__all__ = ["BatchLastScorer", "EXPORT_FORMATS", "GanomalyScorer", "LAYOUTS", "METADATA_NAME", "OnnxScorer",
           "check_scorer_input", "default_layout", "export_model_file", "export_onnx", "export_torchscript",
           "onnx_available", "read_metadata", "scoring_module", "to_torchscript"]
