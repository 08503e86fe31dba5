"""Exporting a trained run for other runtimes: SavedModel, LiteRT (float32, float16, int8)
and ONNX, each checked against the Keras model on the test set before it is written.

One module per format (`savedmodel`, `litert`, `onnx`), `graph` for the float32 export
graph and `parity` for the gate; `export_run` ties them together. Exported models are run
by `cifar_cnn.runtimes` (``Classifier.load(PATH)``, ``cifar-cnn predict PATH``).
"""

from cifar_cnn.errors import ExportParityError
from cifar_cnn.export.exporter import FORMATS, ExportResult, export_run
from cifar_cnn.export.parity import TOLERANCES, ParityReport

__all__ = ["FORMATS", "TOLERANCES", "ExportParityError", "ExportResult", "ParityReport",
           "export_run"]
