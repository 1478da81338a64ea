"""Open-set recognition: how much a clip looks like the clips a model was trained on (its *familiarity*).

A network trained on six classes spreads all its probability over them, whatever it is shown, so the top
probability cannot say "none of these" (Hendrycks and Gimpel's max-softmax baseline; on other actions it flagged
almost nothing). Instead, every clip or timeline window is compared with the training clips in the model's own
feature space, the frozen encoder's per-frame features, as in deep nearest-neighbour out-of-distribution detection
(Sun et al., ICML 2022):

* a clip's *descriptor* is the mean over its frames of the per-frame features (each frame's map averaged over
  space), standardised with the training bank's statistics and scaled to unit length;
* its *familiarity* is the mean cosine similarity to its :data:`K` nearest descriptors in the *bank*: every view
  (as served, augmented, temporal crops) of every training clip. Higher is more like the known actions.

Descriptor and ``K`` were chosen by leave-one-class-out over the non-test groups (``tools/openset_choice.py``,
``docs/openset.md``): mean AUROC 0.956 with the mean and K = 200, 0.71 with mean and standard deviation.

The operating point is a threshold on familiarity kept in ``openset.npz`` beside the bank: the value that keeps
``keep`` (95 %) of the known non-test clips, each scored against a bank without its own group
(:func:`fit_grouped`). The method, its parameters, the threshold and where they came from are written into
``config.json`` (``openset``); a model directory without these files is served on the top probability alone, and
says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from har.errors import ModelError

OPENSET_FILE = "openset.npz"  # the bank, its standardisation and the threshold
OPENSET_REPORT = "openset.json"  # measured open-set behaviour (evaluation only; the dashboard reads it)
K = 200  # nearest neighbours averaged (of ~3,000 bank descriptors: ~20 clips' views)
KEEP = 0.95  # share of known validation views the threshold keeps
METHOD = "knn-cosine"


def pooled(features: np.ndarray) -> np.ndarray:
    """Per-frame features ``(n, frames, [h, w,] C)`` -> ``(n, frames, C)``: maps averaged over space."""
    f = np.asarray(features, np.float32)
    return f.mean(axis=tuple(range(2, f.ndim - 1))) if f.ndim > 3 else f


def describe(features: np.ndarray) -> np.ndarray:
    """``(n, frames, ...)`` per-frame features -> raw descriptors ``(n, C)``: their mean over frames."""
    return pooled(features).mean(axis=1)


@dataclass(frozen=True)
class Familiarity:
    """A fitted familiarity score: the bank of unit descriptors, their standardisation, the threshold."""

    bank: np.ndarray  # (m, C) float32, standardised and unit length
    mean: np.ndarray  # (C,) of the raw bank descriptors
    scale: np.ndarray  # (C,) their std (floored)
    threshold: float  # familiarity below this: "none of the known actions"
    k: int = K
    info: dict = field(default_factory=dict)  # method, parameters, provenance (written into config.json)

    def _unit(self, raw: np.ndarray) -> np.ndarray:
        z = (raw - self.mean) / self.scale
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-6)

    def of_descriptors(self, raw: np.ndarray) -> np.ndarray:
        """Familiarity ``(n,)`` of raw descriptors ``(n, C)``."""
        if len(raw) == 0:
            return np.zeros(0, np.float32)
        sims = self._unit(np.asarray(raw, np.float32)) @ self.bank.T  # (n, m) cosine similarities
        k = min(self.k, sims.shape[1])
        top = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
        return top.mean(axis=1).astype(np.float32)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Familiarity ``(n,)`` of clips' per-frame features ``(n, frames, ...)``."""
        return self.of_descriptors(describe(features))

    def unknown(self, familiarity: np.ndarray) -> np.ndarray:
        return np.asarray(familiarity) < self.threshold

    def unknown_probability(self, familiarity: np.ndarray) -> np.ndarray:
        """A soft version of :meth:`unknown` for the timeline's decoder: 0.5 at the threshold, 0.05 at the median
        familiarity of the known validation clips (``info["tau"]``), towards 1 below."""
        tau = float(self.info.get("tau", 0.0)) or 1e-2
        return 1.0 / (1.0 + np.exp(-(self.threshold - np.asarray(familiarity, np.float64)) / tau))

    @classmethod
    def fit(cls, bank_raw: np.ndarray, known_raw: np.ndarray, keep: float = KEEP, k: int = K,
            provenance: str = "") -> Familiarity:
        """Bank from the training descriptors ``bank_raw``; threshold keeping ``keep`` of ``known_raw`` (known
        clips that are not in the bank: validation groups)."""
        if len(bank_raw) == 0 or len(known_raw) == 0:
            raise ModelError(f"An open-set score needs training clips for its bank and known clips to set its "
                             f"threshold on; got {len(bank_raw)} and {len(known_raw)}.")
        k = min(k, len(bank_raw))  # a small smoke-test run: all of the bank
        mean = bank_raw.mean(axis=0)
        scale = np.maximum(bank_raw.std(axis=0), 1e-3 * float(bank_raw.std(axis=0).mean()) + 1e-8)
        z = (bank_raw - mean) / scale
        bank = (z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-6)).astype(np.float32)
        draft = cls(bank, mean.astype(np.float32), scale.astype(np.float32), 0.0, k)
        threshold, tau = operating_point(draft.of_descriptors(known_raw), keep)
        info = {"method": METHOD, "k": k, "keep": keep, "threshold": round(threshold, 6), "tau": round(tau, 6),
                "bank": len(bank_raw),
                "threshold_from": len(known_raw), "provenance": provenance}
        return cls(bank, draft.mean, draft.scale, threshold, k, info)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / OPENSET_FILE
        np.savez_compressed(path, bank=self.bank.astype(np.float16), mean=self.mean, scale=self.scale,
                            threshold=np.float64(self.threshold), k=np.int64(self.k),
                            info=np.array(json.dumps(self.info)))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Familiarity | None:
        """The directory's familiarity score, or None when it has none (served on the top probability alone)."""
        path = Path(directory) / OPENSET_FILE
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["bank"].astype(np.float32), z["mean"], z["scale"], float(z["threshold"]), int(z["k"]),
                           json.loads(str(z["info"])))
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path} is not a readable open-set file: {exc}.") from exc


FOLDS = 4  # group folds of the threshold's held-out scores


def operating_point(known: np.ndarray, keep: float) -> tuple[float, float]:
    """``(threshold, tau)`` from the familiarity of known clips: the threshold keeps ``keep`` of them; tau is the
    spread that puts the unknown probability of the median known clip at 5 %."""
    threshold = float(np.quantile(known, 1.0 - keep))
    return threshold, max(float(np.median(known)) - threshold, 1e-4) / math.log(0.95 / 0.05)


def fit_grouped(train: np.ndarray, train_groups: list[str], validation: np.ndarray, validation_groups: list[str],
                keep: float = KEEP, k: int = K, folds: int = FOLDS) -> Familiarity:
    """The familiarity of a run: the bank from every view of the training clips' cached features ``(n, views,
    frames, ...)``; the threshold keeping ``keep`` of *every* training and validation clip as served, each scored
    against a bank that holds none of its group: the groups of each class are dealt into ``folds`` folds (sorted,
    in turn) and each fold is scored against the other folds' views, as group cross-validation does.

    Why not the validation clips alone: 18 validation groups give a noisy quantile, and on the shipped split a
    threshold set on them rejected 15 % of held-out non-test clips in 4-fold group cross-validation
    (docs/openset.md)."""
    x = np.concatenate([train, validation])
    groups = list(train_groups) + list(validation_groups)
    by_class: dict[str, list[str]] = {}
    for g in sorted(set(groups)):
        by_class.setdefault(g.split("/")[0], []).append(g)
    fold_of = {g: i % folds for gs in by_class.values() for i, g in enumerate(gs)}
    fold = np.array([fold_of[g] for g in groups])
    raw = describe(x.reshape(-1, *x.shape[2:])).reshape(len(x), x.shape[1], -1)
    held_out = np.zeros(len(x), np.float32)
    for f in range(folds):
        inside = fold == f
        if inside.all() or not inside.any():
            continue
        part = Familiarity.fit(raw[~inside].reshape(-1, raw.shape[-1]), raw[inside][:, 0], keep, k)
        held_out[inside] = part.of_descriptors(raw[inside][:, 0])
    bank = raw[: len(train)].reshape(-1, raw.shape[-1])
    fam = Familiarity.fit(bank, raw[len(train):, 0], keep, k)
    threshold, tau = operating_point(held_out, keep)
    info = {**fam.info, "threshold": round(threshold, 6), "tau": round(tau, 6), "threshold_from": len(x),
            "provenance": f"bank: all {train.shape[1]} views of the {len(train)} training-group clips; threshold: "
                          f"keeps {keep:.0%} of the {len(x)} training and validation clips as served, each scored "
                          f"against a bank without its group ({folds}-fold group split)"}
    return Familiarity(fam.bank, fam.mean, fam.scale, threshold, fam.k, info)


def fit_model_dir(directory: str | Path, data: str | Path, cache_dir: str | Path | None = None,
                  keep: float = KEEP) -> Familiarity:
    """Fit (or refit) the familiarity of a trained imagenet-preset model directory from its config's split of
    ``data``; writes ``openset.npz`` and the ``openset`` entry of ``config.json``."""
    import dataclasses

    import keras

    from har.config import ModelConfig
    from har.data import clips_of, default_cache_dir, index_dataset
    from har.features import features_of
    from har.modeldir import MODEL_FILE

    config = ModelConfig.load(directory)
    if not config.encoder:
        raise ModelError(f"{directory} has no frozen encoder ({config.preset} preset): its familiarity cannot be "
                         "fitted from cached encoder features.")
    model = keras.saving.load_model(Path(directory) / MODEL_FILE, safe_mode=True)
    index = index_dataset(data)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    clips = {s: clips_of(index, config.split[s]) for s in ("train", "validation")}
    x = {s: features_of(c, model, config.sampling, config.min_window_s, cache, desc=f"{s} features")
         for s, c in clips.items()}
    fam = fit_grouped(x["train"], [c.group for c in clips["train"]], x["validation"],
                      [c.group for c in clips["validation"]], keep)
    fam.save(directory)
    dataclasses.replace(config, openset=fam.info).save(directory)
    return fam
