"""The Keras dtype policy a run trains under: the recipe's, or for ``"auto"`` this machine's.

bfloat16 halves the memory traffic of every convolution, and where the hardware multiplies
it natively (x86 CPUs with AVX512_BF16 or AMX, NVIDIA GPUs from Ampere on) fast94 trains
faster in it. Elsewhere oneDNN emulates it, and a training step ran several times slower
than in float32 (benchmarks/HISTORY.md, "Precision"). So ``"auto"`` takes
``mixed_bfloat16`` only where it is native, else ``float32``.
"""

from __future__ import annotations

from cifar_cnn.environment import cpu_flags

AUTO = "auto"
_NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def native_bfloat16() -> tuple[bool, str]:
    """Whether this machine multiplies bfloat16 in hardware, and what that is based on.

    Looks at the first GPU TensorFlow sees (compute capability 8.0 or higher), else at the
    CPU's flags in /proc/cpuinfo; a CPU whose flags cannot be read counts as not native.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get(
            "compute_capability")
        if capability is None:
            return False, "GPU of unknown compute capability"
        version = ".".join(map(str, capability))
        if tuple(capability) >= (8, 0):
            return True, f"GPU of compute capability {version}"
        return False, f"GPU of compute capability {version}: bfloat16 needs 8.0"
    found = sorted(cpu_flags() & _NATIVE_BF16_CPU_FLAGS)
    if found:
        return True, f"CPU with {' and '.join(found)}"
    return False, "CPU without avx512_bf16 or amx_bf16: bfloat16 would be emulated"


def resolve_precision(precision: str) -> tuple[str, str | None]:
    """The dtype policy to train under, and for ``"auto"`` the reason it was chosen.

    Example:
        >>> resolve_precision("float32")
        ('float32', None)
    """
    if precision != AUTO:
        return precision, None
    native, why = native_bfloat16()
    return ("mixed_bfloat16" if native else "float32"), why
