"""How well a model learns from few examples, measured on clips of groups it was not taught from (``fewshot.json``).

Two protocols, each in the space teaching works in (embeddings and descriptors of the library's own example views,
:func:`example_inputs`; the fit of :mod:`har.teaching.classifier`, as :func:`har.teach` runs it):

* **other actions**: classes none of the base's (a folder per class, UCF-named, e.g. the shared
  ``other-actions``), all taught at once. Each class's groups, sorted, are dealt: the first half (at most four)
  teach, the others score. With ``n`` examples drawn from the teaching groups (every clip of them for ``all``), the
  taught model answers among the base classes and all the new ones; scored on the scoring groups' clips (new-action
  accuracy) and on the base model's test groups (how much the base classes lose against the base model itself).
* **left out**: each base class in turn is dropped from the base (its row of the last layer and its stored training
  views) and taught back from ``n`` of its training clips (their stored views: as served and mirrored); scored on
  its test-group clips. The temporal model's embedding was trained with that class, so this is an upper bound of
  learning a truly new action.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from har.teaching.classifier import fit

SHOTS = (1, 2, 3, 5, "all")
DRAWS = 5  # random draws of the n examples per point (one for "all")
MOST_TEACHING_GROUPS = 4


@dataclass(frozen=True)
class Clips:
    """Labelled clips in teaching's space: every view's input ``(n, views, dim + C)`` (view 0: as served)."""

    x: np.ndarray
    labels: np.ndarray  # (n,) int
    groups: list[str]  # "<Class>/gNN"
    names: list[str]


def example_inputs(rec, embed_model, paths: Sequence, progress=None) -> np.ndarray:
    """``(n, VIEWS, dim + C)`` float32: each clip's views (:func:`har.teaching.examples.clip_views`) through the served
    per-frame half and the head up to the embedding, beside their descriptors: what :func:`har.teach` fits on."""
    from pathlib import Path

    from har.teaching.embedding import embed
    from har.teaching.examples import Example, clip_views, file_digest

    c = rec.config
    out = []
    for i, path in enumerate(paths):
        views = clip_views(Path(path), Example("", str(path)), c.frames, c.size, c.min_window_s,
                           int(file_digest(Path(path))[:8], 16))
        features = rec.frame_features(views.reshape(-1, *views.shape[2:]))
        e, d = embed(embed_model, features.reshape(len(views), c.frames, *features.shape[1:]))
        out.append(np.concatenate([e, d], axis=1))
        if progress:
            progress(i + 1, len(paths))
    return np.stack(out)


def served_inputs(rec, embed_model, paths: Sequence) -> np.ndarray:
    """``(n, 1, dim + C)``: each clip as served only (what scoring reads)."""
    from har.media.video import sample_clip
    from har.teaching.embedding import embed

    c = rec.config
    out = []
    for path in paths:
        features = rec.frame_features(sample_clip(path, c.frames, c.size))
        e, d = embed(embed_model, features[None])
        out.append(np.concatenate([e, d], axis=1))
    return np.stack(out)


def deal_groups(groups: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(teaching, scoring)`` groups of one class: the first half (at least one, at most four) of them sorted."""
    ordered = sorted(set(groups))
    k = min(MOST_TEACHING_GROUPS, max(1, len(ordered) // 2))
    return ordered[:k], ordered[k:]


def _accuracy(layer, x: np.ndarray, y: np.ndarray) -> float:
    return float((layer.predict(x) == y).mean()) if len(y) else float("nan")


def other_actions(base_x, base_y, base_kernel, base_bias, dim: int, test: Clips, base_test_accuracy: float,
                  other: Clips, shots=SHOTS, draws: int = DRAWS, seed: int = 0) -> dict:
    """The other-actions protocol (module docstring): one row per ``n`` with the new actions' accuracy (mean over
    draws, and the lowest and highest draw), the base test accuracy and its loss in points."""
    base_classes = base_kernel.shape[1]
    classes = sorted(set(other.labels.tolist()))
    dealt = {}
    teach_pool, score = {}, []
    for c in classes:
        idx = np.where(other.labels == c)[0]
        teaching, scoring = deal_groups([other.groups[i] for i in idx])
        dealt[int(c)] = {"teaching": teaching, "scoring": scoring}
        teach_pool[c] = [i for i in idx if other.groups[i] in teaching]
        score += [i for i in idx if other.groups[i] in scoring]
    score = np.array(score)
    new_label = {c: base_classes + j for j, c in enumerate(classes)}
    total = base_classes + len(classes)
    rows = []
    for n in shots:
        accs, base_accs = [], []
        for d in range(1 if n == "all" else draws):
            rng = np.random.default_rng([seed, d, 0 if n == "all" else int(n)])
            picked = [i for c in classes for i in (teach_pool[c] if n == "all" else
                                                   rng.choice(teach_pool[c], min(int(n), len(teach_pool[c])),
                                                              replace=False))]
            xs = other.x[picked].reshape(-1, other.x.shape[2])
            ys = np.repeat([new_label[other.labels[i]] for i in picked], other.x.shape[1])
            layer = fit(np.concatenate([base_x, xs]), np.concatenate([base_y, ys]), total, base_kernel, base_bias,
                        base_x, dim)
            accs.append(_accuracy(layer, other.x[score, 0], np.array([new_label[c] for c in other.labels[score]])))
            base_accs.append(_accuracy(layer, test.x[:, 0], test.labels))
        rows.append({"examples": n, "new_accuracy": round(float(np.mean(accs)), 4),
                     "new_lowest": round(float(np.min(accs)), 4), "new_highest": round(float(np.max(accs)), 4),
                     "base_accuracy": round(float(np.mean(base_accs)), 4),
                     "base_loss_points": round(100 * (base_test_accuracy - float(np.mean(base_accs))), 2),
                     "draws": len(accs)})
    return {"rows": rows, "groups": dealt, "scored_clips": int(len(score)), "base_test_clips": int(len(test.labels)),
            "ways": total}


def left_out(base_data, base_kernel, base_bias, dim: int, test: Clips, shots=SHOTS,
             draws: int = DRAWS, seed: int = 0) -> dict:
    """The left-out protocol (module docstring): per base class and ``n``, the taught-back class's accuracy on its
    test clips and the other classes' accuracy, each against a base without the class."""
    x_all, y_all = base_data.inputs()
    per_clip = np.concatenate([base_data.embedding, base_data.descriptor], axis=2)  # (clips, views, F)
    base_classes = base_kernel.shape[1]
    out = {}
    for c in range(base_classes):
        keep = [k for k in range(base_classes) if k != c]
        remap = {k: j for j, k in enumerate(keep)}
        mask = y_all != c
        bx, by = x_all[mask], np.array([remap[v] for v in y_all[mask]])
        kernel, bias = base_kernel[:, keep], base_bias[keep]
        pool = np.where(base_data.labels == c)[0]
        back = len(keep)
        t_mask = test.labels == c
        y_test = np.array([remap.get(v, back) for v in test.labels])
        rows = []
        for n in shots:
            accs, rest = [], []
            for d in range(1 if n == "all" else draws):
                rng = np.random.default_rng([seed, c, d, 0 if n == "all" else int(n)])
                picked = pool if n == "all" else rng.choice(pool, min(int(n), len(pool)), replace=False)
                xs = per_clip[picked].reshape(-1, per_clip.shape[2])
                layer = fit(np.concatenate([bx, xs]), np.concatenate([by, np.full(len(xs), back)]), base_classes,
                            kernel, bias, bx, dim)
                pred = layer.predict(test.x[:, 0])
                accs.append(float((pred[t_mask] == back).mean()))
                rest.append(float((pred[~t_mask] == y_test[~t_mask]).mean()))
            rows.append({"examples": n, "accuracy": round(float(np.mean(accs)), 4),
                         "others_accuracy": round(float(np.mean(rest)), 4), "draws": len(accs)})
        out[int(c)] = rows
    return out
