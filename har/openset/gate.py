"""The open set's *gate*: a linear classifier of clip descriptors that learned what is none of the known actions
from real clips of other actions (outlier exposure with real outliers, Hendrycks et al., ICLR 2019).

Its inputs are a clip's descriptor (:func:`har.openset.score.describe`: the frozen encoder's features averaged over
frames and space), standardised by the known clips' mean and spread. Its outputs are the known classes and one more,
*other*; it is fitted by multinomial logistic regression (L-BFGS) in which the known clips and the other-action
clips weigh the same in all, each known class a share of the known half, with an L2 penalty. Its score of a clip is
the log-odds of *any known class* against *other*: high for the known actions, low for what the other actions look
like. The familiarity adds it, standardised, to the model's evidence and the similarity to the known clips
(:class:`har.openset.score.Familiarity`); how much, and its penalty, were chosen by leaving each other-action class out
in turn (``tools/openset_outliers.py``, docs/openset.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

L2 = 1e-2  # penalty per weight against the mean loss (leave-other-class-out, docs/openset.md)
MAX_ITER = 300


@dataclass(frozen=True)
class Gate:
    """A fitted gate over raw descriptors ``(n, C)``: ``kernel`` ``(C, classes + 1)`` (the last column: other), and
    the raw descriptors of the other-action clips it was fitted on (every view, float16), which teaching a new
    action reads (:meth:`taught`)."""

    kernel: np.ndarray
    bias: np.ndarray
    others: np.ndarray | None = None

    def logits(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw, np.float32) @ self.kernel + self.bias

    def score(self, raw: np.ndarray) -> np.ndarray:
        """``(n,)``: log of the known classes' summed probability minus the log of other's."""
        z = self.logits(raw).astype(np.float64)
        known = z[:, :-1]
        top = known.max(axis=1)
        return (top + np.log(np.exp(known - top[:, None]).sum(axis=1)) - z[:, -1]).astype(np.float32)

    def taught(self, raw: np.ndarray, actions: np.ndarray, l2: float = L2) -> Gate:
        """The gate with one known column more per taught action: raw descriptors ``raw`` ``(n, C)`` of the examples'
        views, ``actions`` ``(n,)`` which action each is. Each new column is the other column plus the log-odds of a
        two-way gate fitted on the action's views against the stored other-action views, so that a clip like the
        examples counts as known while the base columns stay as they were. Other-action views as close to the
        examples as the examples are to each other are left out of that fit (the action taught may be one of them,
        or like one). Without stored other-action views the gate is returned as it is."""
        if self.others is None or not len(raw):
            return self
        stored = np.asarray(self.others, np.float32)
        kernels, biases = [], []
        for action in np.unique(actions):
            mine = np.asarray(raw, np.float32)[np.asarray(actions) == action]
            others = stored[~_like(stored, mine)]
            two = fit_gate(mine, np.zeros(len(mine), int), 1, others, l2=l2, stats_from_all=True)
            kernels.append(self.kernel[:, -1] + two.kernel[:, 0] - two.kernel[:, 1])
            biases.append(self.bias[-1] + two.bias[0] - two.bias[1])
        kernel = np.concatenate([self.kernel[:, :-1], np.stack(kernels, axis=1), self.kernel[:, -1:]], axis=1)
        bias = np.concatenate([self.bias[:-1], biases, self.bias[-1:]])
        return Gate(kernel.astype(np.float32), bias.astype(np.float32), self.others)


def _like(others: np.ndarray, examples: np.ndarray) -> np.ndarray:
    """Which ``others`` ``(m, C)`` lie as close to the mean of ``examples`` ``(n, C)`` (cosine, standardised on both)
    as the least typical example does."""
    both = np.concatenate([others, examples])
    z = (both - both.mean(axis=0)) / np.maximum(both.std(axis=0), 1e-6)
    z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-6)
    centre = z[len(others):].mean(axis=0)
    sims = z @ (centre / max(float(np.linalg.norm(centre)), 1e-6))
    return sims[: len(others)] >= sims[len(others):].min()


def fit_gate(known: np.ndarray, labels: np.ndarray, classes: int, other: np.ndarray, l2: float = L2,
             max_iter: int = MAX_ITER, stats_from_all: bool = False) -> Gate:
    """A :class:`Gate` from raw descriptors of known clips ``known`` ``(n, C)`` with their class ``labels`` ``(n,)``
    in ``[0, classes)``, and of other-action clips ``other`` ``(m, C)``; inputs standardised by the known clips'
    mean and spread (``stats_from_all``: of all the clips, for a few known ones)."""
    known = np.asarray(known, np.float64)
    other = np.asarray(other, np.float64)
    stats = np.concatenate([known, other]) if stats_from_all else known
    mean = stats.mean(axis=0)
    scale = np.maximum(stats.std(axis=0), 1e-6)
    z = (np.concatenate([known, other]) - mean) / scale
    y = np.concatenate([np.asarray(labels, int), np.full(len(other), classes)])
    k = classes + 1
    counts = np.bincount(y, minlength=k).astype(np.float64)
    present = counts[:classes] > 0
    share = np.zeros(k)
    share[:classes][present] = 0.5 / present.sum()  # the known half, a share a class
    share[classes] = 0.5
    weight = (share / np.maximum(counts, 1.0))[y]
    f = z.shape[1]
    w, b, _ = softmax_regression(z, y, weight, np.full((f, k), l2), np.zeros((f, k)), np.zeros(k), max_iter,
                                 ftol=1e-10, gtol=1e-6)
    return Gate((w / scale[:, None]).astype(np.float32), (b - (mean / scale) @ w).astype(np.float32))


def softmax_regression(z: np.ndarray, y: np.ndarray, weight: np.ndarray, lam: np.ndarray, w0: np.ndarray,
                       b0: np.ndarray, max_iter: int, ftol: float, gtol: float):
    """Multinomial logistic regression by L-BFGS on standardised inputs ``z`` ``(n, F)`` with labels ``y`` ``(n,)``,
    each clip's weight in the loss ``weight`` ``(n,)``, and an L2 pull ``lam`` ``(F, classes)`` of every weight
    towards its start ``w0`` (``b0``: the biases' start, unpulled). Returns ``(w, b, scipy's result)``; the
    teaching layer (:mod:`har.teaching.classifier`) is fitted by it too."""
    from scipy.optimize import minimize

    f, k = w0.shape
    onehot = np.eye(k)[y]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: f * k].reshape(f, k), theta[f * k:]
        logits = z @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        value = -(weight * np.log(np.maximum((p * onehot).sum(axis=1), 1e-12))).sum()
        g = (p - onehot) * weight[:, None]  # (n, classes)
        pull = w - w0
        return value + float((lam * pull ** 2).sum()), np.concatenate([(z.T @ g + 2 * lam * pull).ravel(),
                                                                        g.sum(axis=0)])

    result = minimize(loss, np.concatenate([w0.ravel(), b0]), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "ftol": ftol, "gtol": gtol})
    return result.x[: f * k].reshape(f, k), result.x[f * k:], result
