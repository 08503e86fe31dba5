"""Shared by the layer tests."""

from __future__ import annotations


def output_and_grads(fn, x, weights=()) -> tuple:
    """``fn(x)`` and the gradients of a fixed weighting of it by ``x`` and ``weights``,
    as float32 arrays; checks that ``fn`` keeps ``x``'s dtype."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
        loss = tf.reduce_sum(tf.cast(y, "float32") * tf.range(y.shape[-1], dtype="float32"))
    assert y.dtype == x.dtype
    grads = tape.gradient(loss, [x, *weights])
    return tf.cast(y, "float32").numpy(), [tf.cast(g, "float32").numpy() for g in grads]
