"""The export graph: a run's model rebuilt in float32 with layers every converter handles.

Runs store their dtype policy per layer (``mixed_bfloat16`` for airbench), so a global
float32 policy changes nothing: the config's ``dtype`` fields are rewritten instead.
bfloat16 kernels need TensorFlow's Flex ops in LiteRT and break onnxruntime's type checks;
`FusedGELU` computes ``erfc`` (no LiteRT builtin, no ONNX op) and becomes `ErfGELU`.
Everything else (`SmallMapConv2D`, `FusedBatchNormalization`, `PatchWhitening`) converts as
is. On the default model the float32 rebuild agrees with the float32 Keras model to 5e-7.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

# class name in a config -> the export-friendly layer with the same inference maths
_SWAPS = {"FusedGELU": ("ErfGELU", "cifar_cnn.layers.fused_gelu", "cifar_cnn>ErfGELU")}


def _float32_config(model: Any, swap: bool) -> dict[str, Any]:
    cfg = copy.deepcopy(model.get_config())
    for layer in cfg["layers"]:
        c = layer["config"]
        if layer["class_name"] != "InputLayer" and "dtype" in c:
            c["dtype"] = "float32"
        if swap and layer["class_name"] in _SWAPS:
            cls, module, registered = _SWAPS[layer["class_name"]]
            layer.update(class_name=cls, module=module, registered_name=registered)
            layer["config"] = {k: c[k] for k in ("name", "trainable", "dtype") if k in c}
    return cfg


def float32_model(model: Any, *, export_layers: bool = True) -> Any:
    """`model` rebuilt in float32 with its weights; `export_layers` swaps in `ErfGELU`.

    With ``export_layers=False`` it is the reference the parity gate compares exports with:
    the run's own layers, in the precision exports compute in.
    """
    import keras

    import cifar_cnn.layers  # noqa: F401  (registers the layers from_config looks up)

    cfg = _float32_config(model, export_layers)
    cls = type(model) if isinstance(model, keras.Sequential) else keras.Model
    new = cls.from_config(cfg)
    new.set_weights([np.asarray(w) for w in model.get_weights()])
    return new


def precision(model: Any) -> str:
    """The dtype policy `model`'s layers compute in: a run stores it per layer, so the
    model's own policy says float32 even for a ``mixed_bfloat16`` run."""
    names = [layer.dtype_policy.name for layer in model.layers
             if layer.dtype_policy.name != "float32"]
    return max(set(names), key=names.count) if names else "float32"
