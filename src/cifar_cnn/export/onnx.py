"""ONNX export with tf2onnx from the SavedModel's ``serve`` signature, and its runner.

Keras' own ONNX export is not used: it turns the Normalization layer's constants into
missing graph inputs, and on an unconvertible op it writes a broken file without an
error. The parity gate therefore always runs the file in onnxruntime.
"""

from __future__ import annotations

import os
from pathlib import Path

OPSET = 17


def convert(savedmodel: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Write an ``.onnx`` file converted from an exported SavedModel's ``serve`` signature."""
    import onnx
    import tf2onnx
    from tf2onnx import tf_loader

    graph_def, inputs, outputs = tf_loader.from_saved_model(
        str(savedmodel), None, None, signatures=["serve"])
    proto, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=inputs,
                                              output_names=outputs, opset=OPSET,
                                              output_path=str(path))
    onnx.checker.check_model(proto)
    return Path(path)
