"""Weight averaging for the ablation benchmark: Lookahead, as airbench94 (SGD) used it.

Every `every` steps an exponential moving average of all the network's float variables
(batch-norm statistics too, which Keras' ``use_ema`` leaves out) takes a step towards the
weights, and the weights are reset to the average. The average's decay grows from 0 (no
averaging) as the cube of the training progress to ``0.95 ** every`` in the last step, and
training ends on the average (airbench94.py, github.com/KellerJordan/cifar10-airbench).

This lives in benchmarks/ while it is an experiment (issue "94% with a third less work"):
the average is not part of a run's checkpoints, so such a run cannot be resumed. A recipe
field follows if it wins. It costs no training work in the issue's count (no forward or
backward pass), only a few array updates every `every` steps.
"""

from __future__ import annotations

import keras
import numpy as np


class Lookahead(keras.callbacks.Callback):
    """Pull the weights back to their moving average every `every` steps; end on it.

    Args:
        every: steps between updates.
        decay: the average's decay per step at the end of training (airbench94: 0.95).
        power: the decay grows as ``progress ** power``.
    """

    def __init__(self, every: int = 5, decay: float = 0.95, power: float = 3.0) -> None:
        super().__init__()
        if every < 1 or not 0 <= decay < 1:
            raise ValueError(f"need every >= 1 and 0 <= decay < 1; received {every}, {decay}.")
        self.every, self.decay, self.power = every, decay, power
        self.updates = 0
        self._average: list[keras.Variable] = []
        self._step = 0
        self._total = 1

    def _weights(self) -> list[keras.Variable]:
        return [v for v in self.model.weights if "float" in str(v.dtype)]

    def decay_at(self, step: int) -> float:
        """The average's decay per update after `step` of the run's steps."""
        return float(self.decay ** self.every * (step / self._total) ** self.power)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._total = max(1, int(self.params["steps"]) * int(self.params["epochs"]))
        self._average = [keras.Variable(np.array(v.numpy()), trainable=False)
                         for v in self._weights()]

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._step = epoch * int(self.params["steps"])

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._step += 1
        if self._step % self.every == 0:
            self._update(self.decay_at(self._step))

    def on_train_end(self, logs: dict | None = None) -> None:
        self._update(1.0)  # the weights become the average

    def _update(self, decay: float) -> None:
        for average, v in zip(self._average, self._weights(), strict=True):
            average.assign(decay * average.numpy() + (1.0 - decay) * v.numpy())
            v.assign(average.numpy())
        self.updates += 1
