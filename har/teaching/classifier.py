"""The taught model's last layer: a softmax over the base classes and the new ones, fitted on embeddings.

Inputs are each clip's embedding beside its descriptor (:mod:`har.teaching.embedding`), each standardised by the base
training views' mean and spread (the descriptor then scaled by ``descriptor_weight``). The base classes' rows start
from the base model's own last layer (its weights on the embedding, zeros on the descriptor; a taught base's rows
as they are) and the new rows from zero; the fit is multinomial logistic regression (L-BFGS) with every class
weighing the same in the loss (a class of five clips as much as one of a hundred) and an L2 pull of every weight
towards where it started, a hundred times stronger on the base rows than on the new ones: the base classes keep
their answers unless the examples say otherwise. Then the new classes' biases are raised by ``new_offset`` (a
logit adjustment): the base rows were fitted on the temporal model's own training clips, whose embeddings it knows
better than any new clip's, so the fit leaves them too confident against the new classes on clips of new settings.
The standardisation is folded back into the weights: the layer reads raw embeddings and descriptors, with no extra
layer to serve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from har.openset.gate import softmax_regression

L2 = 1e-3  # pull of the new rows towards zero, per weight, against the mean loss (docs/teach.md)
BASE_L2 = 0.1  # pull of the base rows towards the base model's layer (docs/teach.md)
NEW_OFFSET = 1.0  # added to the new classes' logits after the fit (docs/teach.md)
DESCRIPTOR_WEIGHT = 3.0  # scale of the standardised descriptor beside the standardised embedding (docs/teach.md)
MAX_ITER = 400  # L-BFGS iterations (a 7-class fit stops near 380; a 15-class one may use them all)


@dataclass(frozen=True)
class Layer:
    """A fitted softmax layer over raw ``[embedding, descriptor]`` inputs."""

    kernel: np.ndarray  # (dim + C, classes) float32
    bias: np.ndarray  # (classes,) float32
    iterations: int  # L-BFGS iterations run
    loss: float  # final training loss

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float32) @ self.kernel + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.logits(x).argmax(axis=1)


def fit(x: np.ndarray, y: np.ndarray, classes: int, base_kernel: np.ndarray, base_bias: np.ndarray,
        stats_from: np.ndarray, dim: int, l2: float = L2, descriptor_weight: float = DESCRIPTOR_WEIGHT,
        base_l2: float = BASE_L2, new_offset: float = NEW_OFFSET, max_iter: int = MAX_ITER) -> Layer:
    """Fit the layer on raw inputs ``x`` ``(n, dim + C)`` (embedding first, ``dim`` values) with labels ``y``
    ``(n,)`` in ``[0, classes)``; the base layer ``base_kernel`` ``(dim, base classes)`` (a base model's, over the
    embedding) or ``(dim + C, base classes)`` (a taught model's), ``base_bias`` gives the first classes' starting
    rows; ``stats_from`` ``(m, dim + C)`` the inputs the standardisation is taken from (the base training views)."""
    x = np.asarray(x, np.float64)
    stats_from = np.asarray(stats_from, np.float64)
    mean = stats_from.mean(axis=0)
    scale = np.maximum(stats_from.std(axis=0), 1e-6)
    scale[dim:] /= descriptor_weight
    z = (x - mean) / scale  # (n, F)
    f = z.shape[1]
    rows, base = base_kernel.shape
    assert rows in (dim, f), (rows, dim, f)
    w0 = np.zeros((f, classes))
    w0[:rows, :base] = base_kernel * scale[:rows, None]  # the base layer in standardised units
    b0 = np.zeros(classes)
    b0[:base] = base_bias + mean[:rows] @ base_kernel
    lam = np.full((f, classes), l2)
    lam[:, :base] = base_l2
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    weight = (1.0 / np.maximum(counts, 1.0) / max(int((counts > 0).sum()), 1))[y]  # each class sums to 1/classes
    w, b, result = softmax_regression(z, y, weight, lam, w0, b0, max_iter, ftol=1e-12, gtol=1e-8)
    kernel = w / scale[:, None]  # back to raw inputs
    bias = b - (mean / scale) @ w
    bias[base:] += new_offset
    return Layer(kernel.astype(np.float32), bias.astype(np.float32), int(result.nit), float(result.fun))
