"""Optimisers the fast recipes need that Keras does not ship in this form."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# Coefficients of the quintic Newton-Schulz iteration used by Muon (Jordan et al., 2024).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g: Any, steps: int) -> Any:
    """An approximately orthogonal matrix with ``g``'s singular vectors (Newton-Schulz)."""
    a, b, c = NS_COEFFICIENTS
    transpose = g.shape[0] > g.shape[1]
    x = ops.transpose(g) if transpose else g
    x = x / (ops.sqrt(ops.sum(ops.square(x))) + 1e-7)
    for _ in range(steps):
        xx = ops.matmul(x, ops.transpose(x))
        x = a * x + ops.matmul(b * xx + c * ops.matmul(xx, xx), x)
    return ops.transpose(x) if transpose else x


@keras.saving.register_keras_serializable(package="cifar_cnn")
class MuonSGD(keras.optimizers.Optimizer):
    """Muon for convolution kernels, Nesterov SGD for every other variable.

    The optimiser of airbench94_muon (Jordan, github.com/KellerJordan/cifar10-airbench):

    - 4-D variables (conv kernels) take Muon steps: Nesterov momentum, then the update is
      orthogonalised over the kernel flattened to ``(kh * kw * in, out)``. Before each step the
      kernel is rescaled to Frobenius norm ``sqrt(out)``; as batch norm follows every conv,
      only its direction matters, so it needs no weight decay.
    - Every other variable (batch-norm shifts, the whitening bias, the head) takes Nesterov
      SGD steps at its own rate: ``sgd_learning_rates`` maps a substring of the variable's
      path to a rate (the first match wins), else ``sgd_learning_rate``. Weight decay is added
      to the gradient before momentum, ``sgd_weight_decay`` of the variable per step at the
      start of the schedule, whatever the variable's rate.

    All rates follow ``learning_rate``'s schedule, except that variables matched by a key of
    ``stop_after_steps`` decay linearly to zero over that many steps and then stay frozen.

    Args:
        learning_rate: Muon's rate, a float or a Keras schedule.
        momentum: Muon's momentum.
        ns_steps: Newton-Schulz iterations per step.
        sgd_learning_rate: SGD rate (mean-loss units) of variables no override matches.
        sgd_learning_rates: ``{path substring: rate}`` overrides.
        sgd_momentum: the SGD variables' Nesterov momentum.
        sgd_weight_decay: see above.
        stop_after_steps: ``{path substring: steps}``.
        muon: False updates the conv kernels by Nesterov SGD too (at their
            ``sgd_learning_rates`` entry), for measuring what Muon brings.
    """

    def __init__(
        self,
        learning_rate: float | Any = 0.24,
        momentum: float = 0.6,
        ns_steps: int = 3,
        sgd_learning_rate: float = 0.01,
        sgd_learning_rates: dict[str, float] | None = None,
        sgd_momentum: float = 0.85,
        sgd_weight_decay: float = 0.0,
        stop_after_steps: dict[str, int] | None = None,
        muon: bool = True,
        name: str = "muon_sgd",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = momentum
        self.ns_steps = ns_steps
        self.sgd_learning_rate = sgd_learning_rate
        self.sgd_learning_rates = dict(sgd_learning_rates or {})
        self.sgd_momentum = sgd_momentum
        self.sgd_weight_decay = sgd_weight_decay
        self.stop_after_steps = dict(stop_after_steps or {})
        self.muon = muon
        lr = learning_rate
        self._initial_lr = float(lr(0) if callable(lr) else lr)

    def _match(self, table: dict[str, Any], path: str, default: Any) -> Any:
        return next((v for k, v in table.items() if k in path), default)

    def build(self, var_list: list[Any]) -> None:
        if self.built:
            return
        super().build(var_list)
        self._momentums = [self.add_variable_from_reference(v, "momentum") for v in var_list]
        self._is_kernel = [self.muon and len(v.shape) == 4 for v in var_list]
        self._sgd_lr = [self._match(self.sgd_learning_rates, v.path, self.sgd_learning_rate)
                        for v in var_list]
        self._stop = [self._match(self.stop_after_steps, v.path, None) for v in var_list]

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        i = self._get_variable_index(variable)
        m = self._momentums[i]
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self._is_kernel[i]:
            self.assign(m, self.momentum * m + g)
            g = g + self.momentum * m
            out = variable.shape[-1]
            norm = ops.sqrt(ops.sum(ops.square(variable)))
            w = variable * (out**0.5 / (norm + 1e-12))
            update = ops.reshape(orthogonalize(ops.reshape(g, (-1, out)), self.ns_steps),
                                 variable.shape)
            self.assign(variable, w - lr * update)
            return
        base = self._sgd_lr[i]
        if self._stop[i] is not None:
            step = ops.cast(self.iterations, variable.dtype)
            rate = base * ops.maximum(0.0, 1.0 - step / self._stop[i])
        else:
            rate = base * lr / self._initial_lr
        if self.sgd_weight_decay:
            g = g + (self.sgd_weight_decay / base) * variable
        self.assign(m, self.sgd_momentum * m + g)
        self.assign_sub(variable, rate * (g + self.sgd_momentum * m))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "ns_steps": self.ns_steps,
            "sgd_learning_rate": self.sgd_learning_rate,
            "sgd_learning_rates": self.sgd_learning_rates,
            "sgd_momentum": self.sgd_momentum,
            "sgd_weight_decay": self.sgd_weight_decay,
            "stop_after_steps": self.stop_after_steps,
            "muon": self.muon,
        }
