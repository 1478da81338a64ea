"""Open-set recognition: how much a clip looks like what a model was trained on (its *familiarity*).

A network trained on six classes spreads all its probability over them, whatever it is shown, so a threshold of
0.5 on the top probability flags almost nothing (Hendrycks and Gimpel's max-softmax baseline). Familiarity adds two
signals, each standardised on known clips *held out* from what scores them:

* the model's own **evidence**: the energy of its logits (their log-sum-exp, Liu et al., NeurIPS 2020; the served
  head outputs its logits beside its probabilities, :func:`har.serve.surgery.with_logits`) or the log of its top
  probability;
* the **similarity** to the training clips in the frozen encoder's feature space (deep nearest neighbours, Sun et
  al., ICML 2022): a clip's descriptor is the mean over its frames of the per-frame features averaged over space,
  standardised and unit length; its similarity is the mean cosine similarity to its :data:`K` nearest descriptors
  in the *bank*, every cached view of every training and validation clip.

familiarity = (evidence - its mean) / its std + w x (similarity - its mean) / its std; 0 is a typical known clip
that neither the head nor the bank saw. Higher is more like the known actions.

The evidence and w were chosen per architecture (:data:`CHOSEN`) by leave-one-class-out over the non-test groups,
with heads trained without the left-out class and the knowns taken from each group fold in turn (docs/openset.md;
the figures of each candidate are in docs/notebook/openset.md). The statistics and the threshold come from the
non-test clips scored held out (:func:`fit_grouped`): four group folds, each scored by a head trained on the other
three with the shipped recipe (:func:`har.openset.heldout.held_out_logits`) and against a bank without its groups;
the threshold keeps ``keep`` (95 %) of the clips of groups it was not set on, as the folds estimate it
(:func:`grouped_operating_point`), counting those the top-probability rule already rejects. Method, parameters,
threshold and provenance are stored in ``openset.npz`` and ``config.json`` (``openset``); a model directory without
them is served on the top probability alone, and says so; one fitted before the evidence
(``"method": "knn-cosine"``) on the similarity alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from har.errors import ModelError
from har.openset.gate import Gate
from har.openset.threshold import grouped_operating_point, nested_rejected, operating_point

OPENSET_FILE = "openset.npz"  # the bank, its standardisation, the score's scales and the threshold
OPENSET_REPORT = "openset.json"  # measured open-set behaviour (evaluation only; the dashboard reads it)
K = 200  # nearest neighbours averaged (of ~3,000 bank descriptors: ~20 clips' views)
KEEP = 0.95  # share of known clips of new groups the threshold keeps (estimated on group folds)
# The model's evidence and the weight of the similarity beside it, per architecture: each the best of
# {energy, log top probability} x {0, 0.25, ..., 8} by leave-one-class-out on the non-test groups, knowns from each
# group fold in turn (tools/openset_evidence.py --grouped, docs/openset.md)
CHOSEN = {"lrcn": ("energy", 2.0), "convlstm": ("energy", 4.0)}
EVIDENCE = ("energy", "log_top_probability")
FOLDS = 4  # group folds of the threshold's held-out scores


def pooled(features: np.ndarray) -> np.ndarray:
    """Per-frame features ``(n, frames, [h, w,] C)`` -> ``(n, frames, C)``: maps averaged over space."""
    f = np.asarray(features, np.float32)
    return f.mean(axis=tuple(range(2, f.ndim - 1))) if f.ndim > 3 else f


def describe(features: np.ndarray) -> np.ndarray:
    """``(n, frames, ...)`` per-frame features -> raw descriptors ``(n, C)``: their mean over frames."""
    return pooled(features).mean(axis=1)


def energy(logits: np.ndarray) -> np.ndarray:
    """The negative free energy of logits ``(n, classes)``: their log-sum-exp ``(n,)`` (Liu et al., 2020), high
    where the model's evidence for any of its classes is high."""
    z = np.asarray(logits, np.float64)
    top = z.max(axis=1, keepdims=True)
    return (top[:, 0] + np.log(np.exp(z - top).sum(axis=1))).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def combine_scores(combine: np.ndarray, evidence: np.ndarray, similarity: np.ndarray) -> np.ndarray:
    """``(evidence - m_e) / s_e + w x (similarity - m_s) / s_s`` ``(n,)``, with ``combine`` = ``[m_e, s_e, m_s, s_s,
    w]``: only these scales, never the bank, go into it."""
    e_mean, e_std, s_mean, s_std, weight = (float(v) for v in combine)
    return ((evidence - e_mean) / e_std + weight * (similarity - s_mean) / s_std).astype(np.float32)


def evidence_of(logits: np.ndarray, kind: str) -> np.ndarray:
    """The model's evidence ``(n,)`` that a clip is one of its classes: the :func:`energy` of its logits, or the log
    of its top probability (the max-softmax baseline, on a log scale)."""
    if kind == "energy":
        return energy(logits)
    if kind == "log_top_probability":
        z = np.asarray(logits, np.float64)
        return (z.max(axis=1) - energy(z)).astype(np.float32)  # log softmax at the top class
    raise ModelError(f"Unknown open-set evidence '{kind}': use one of {', '.join(EVIDENCE)}.")


@dataclass(frozen=True)
class Familiarity:
    """A fitted familiarity score: the bank of unit descriptors and their standardisation, the scales that put
    the model's evidence and the similarity on one footing (``combine``), the threshold."""

    bank: np.ndarray  # (m, C) float32, standardised and unit length
    mean: np.ndarray  # (C,) of the raw bank descriptors
    scale: np.ndarray  # (C,) their std (floored)
    threshold: float  # familiarity below this: "none of the known actions"
    k: int = K
    info: dict = field(default_factory=dict)  # method, parameters, provenance (written into config.json)
    # [evidence mean, evidence std, similarity mean, similarity std, similarity weight] of held-out known clips;
    # None: the similarity alone
    combine: np.ndarray | None = None
    evidence: str = "energy"  # what combine's first two describe (EVIDENCE)
    # the gate learned from other actions (har.openset.gate) and [its score's mean, std, weight] over held-out known
    # clips; None: no gate
    gate: Gate | None = None
    gate_combine: np.ndarray | None = None

    @property
    def needs_logits(self) -> bool:
        """True when the score reads the model's logits (then the model must be served with them)."""
        return self.combine is not None

    def _unit(self, raw: np.ndarray) -> np.ndarray:
        z = (raw - self.mean) / self.scale
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-6)

    def similarity(self, raw: np.ndarray) -> np.ndarray:
        """Mean cosine similarity ``(n,)`` of raw descriptors ``(n, C)`` to their K nearest bank descriptors."""
        if len(raw) == 0:
            return np.zeros(0, np.float32)
        sims = self._unit(np.asarray(raw, np.float32)) @ self.bank.T  # (n, m) cosine similarities
        k = min(self.k, sims.shape[1])
        top = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
        return top.mean(axis=1).astype(np.float32)

    def of_descriptors(self, raw: np.ndarray, logits: np.ndarray | None = None) -> np.ndarray:
        """Familiarity ``(n,)`` of raw descriptors ``(n, C)`` and the model's logits ``(n, classes)`` of the same
        clips: the standardised evidence plus the weight times the standardised similarity (0: a typical known
        clip held out from the model), or the similarity alone for a score fitted without the model's evidence."""
        sim = self.similarity(raw)
        if self.combine is None:
            return sim
        if logits is None:
            raise ModelError("This open-set score reads the model's logits, and none were given: re-export the "
                             "model's ONNX copy (python -m har export) or serve it on TensorFlow.")
        return self.combined(evidence_of(logits, self.evidence), sim, self.gated(raw))

    def gated(self, raw: np.ndarray) -> np.ndarray | None:
        """The gate's scores ``(n,)`` of raw descriptors ``(n, C)``, or None without a gate."""
        return None if self.gate is None else self.gate.score(np.asarray(raw, np.float32))

    def combined(self, evidence: np.ndarray, similarity: np.ndarray, gate: np.ndarray | None = None) -> np.ndarray:
        """The combined familiarity ``(n,)`` of the evidence, similarity and gate scores of the same clips."""
        score = combine_scores(self.combine, evidence, similarity)
        if self.gate_combine is not None and gate is not None:
            mean, std, weight = (float(v) for v in self.gate_combine)
            score = score + weight * (np.asarray(gate, np.float32) - mean) / std
        return score.astype(np.float32)

    def __call__(self, features: np.ndarray, logits: np.ndarray | None = None) -> np.ndarray:
        """Familiarity ``(n,)`` of clips' per-frame features ``(n, frames, ...)`` (and their logits)."""
        return self.of_descriptors(describe(features), logits)

    def unknown(self, familiarity: np.ndarray) -> np.ndarray:
        return np.asarray(familiarity) < self.threshold

    @property
    def window_threshold(self) -> float:
        """The threshold of a timeline's windows (short temporal crops score lower than whole clips): set on held-out
        crops of the known clips where the fit had them (``info["window_threshold"]``), else the clips' own."""
        return float(self.info.get("window_threshold", self.threshold))

    def unknown_probability(self, familiarity: np.ndarray, window: bool = False) -> np.ndarray:
        """A soft version of :meth:`unknown` for the timeline's decoder: 0.5 at the threshold (``window``: the
        windows' threshold), 0.05 at the median familiarity of the held-out known clips above it (``info["tau"]``),
        towards 1 below."""
        tau = float(self.info.get("tau", 0.0)) or 1e-2
        threshold = self.window_threshold if window else self.threshold
        return 1.0 / (1.0 + np.exp(-(threshold - np.asarray(familiarity, np.float64)) / tau))

    @classmethod
    def fit(cls, bank_raw: np.ndarray, known_raw: np.ndarray, keep: float = KEEP, k: int = K,
            provenance: str = "") -> Familiarity:
        """The similarity alone: bank from the training descriptors ``bank_raw``; threshold keeping ``keep`` of
        ``known_raw`` (known clips that are not in the bank)."""
        if len(bank_raw) == 0 or len(known_raw) == 0:
            raise ModelError(f"An open-set score needs training clips for its bank and known clips to set its "
                             f"threshold on; got {len(bank_raw)} and {len(known_raw)}.")
        k = min(k, len(bank_raw))  # a small smoke-test run: all of the bank
        mean = bank_raw.mean(axis=0)
        scale = np.maximum(bank_raw.std(axis=0), 1e-3 * float(bank_raw.std(axis=0).mean()) + 1e-8)
        z = (bank_raw - mean) / scale
        bank = (z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-6)).astype(np.float32)
        draft = cls(bank, mean.astype(np.float32), scale.astype(np.float32), 0.0, k)
        threshold, tau = operating_point(draft.similarity(known_raw), keep)
        info = {"method": "knn-cosine", "k": k, "keep": keep, "threshold": round(threshold, 6), "tau": round(tau, 6),
                "bank": len(bank_raw), "threshold_from": len(known_raw), "provenance": provenance}
        return cls(bank, draft.mean, draft.scale, threshold, k, info)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / OPENSET_FILE
        extra = {} if self.combine is None else {"combine": np.asarray(self.combine, np.float64),
                                                 "evidence": np.array(self.evidence)}
        if self.gate is not None:
            extra.update(gate_kernel=self.gate.kernel, gate_bias=self.gate.bias,
                         gate_combine=np.asarray(self.gate_combine, np.float64))
            if self.gate.others is not None:
                extra["gate_others"] = np.asarray(self.gate.others, np.float16)
        np.savez_compressed(path, bank=self.bank.astype(np.float16), mean=self.mean, scale=self.scale,
                            threshold=np.float64(self.threshold), k=np.int64(self.k),
                            info=np.array(json.dumps(self.info)), **extra)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Familiarity | None:
        """The directory's familiarity score, or None when it has none (served on the top probability alone)."""
        path = Path(directory) / OPENSET_FILE
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                gated = "gate_kernel" in z.files
                return cls(z["bank"].astype(np.float32), z["mean"], z["scale"], float(z["threshold"]), int(z["k"]),
                           json.loads(str(z["info"])), z["combine"] if "combine" in z.files else None,
                           str(z["evidence"]) if "evidence" in z.files else "energy",
                           Gate(z["gate_kernel"], z["gate_bias"],
                                z["gate_others"] if "gate_others" in z.files else None) if gated else None,
                           z["gate_combine"] if gated else None)
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path} is not a readable open-set file: {exc}.") from exc


def group_folds(groups: list[str], folds: int = FOLDS) -> np.ndarray:
    """Each clip's fold ``(n,)``: the groups of each class dealt into ``folds`` folds (sorted, in turn), as group
    cross-validation does."""
    by_class: dict[str, list[str]] = {}
    for g in sorted(set(groups)):
        by_class.setdefault(g.split("/")[0], []).append(g)
    fold_of = {g: i % folds for gs in by_class.values() for i, g in enumerate(gs)}
    return np.array([fold_of[g] for g in groups])


def held_out_similarity(raw: np.ndarray, fold: np.ndarray, k: int = K, extra: np.ndarray | None = None,
                        views: tuple[int, ...] = (0,)):
    """Each clip's similarity ``(n,)`` as served (view 0 of raw descriptors ``(n, views, C)``) against a bank of
    every view of the clips outside its fold (``fold``: ``(n,)``, :func:`group_folds`); with ``views`` other than
    ``(0,)``, of those views, ``(n, len(views))``. With ``extra`` raw descriptors ``(m, C)`` of other clips: also
    their similarity to each fold's bank, ``(sim, (folds, m))``."""
    sim = np.zeros((len(raw), len(views)), np.float32)
    folds = np.unique(fold)
    other = np.zeros((len(folds), 0 if extra is None else len(extra)), np.float32)
    for i, f in enumerate(folds):
        inside = fold == f
        if inside.all():
            continue
        part = Familiarity.fit(raw[~inside].reshape(-1, raw.shape[-1]), raw[inside][:, 0], KEEP, k)
        for j, v in enumerate(views):
            sim[inside, j] = part.similarity(raw[inside][:, v])
        if extra is not None:
            other[i] = part.similarity(extra)
    sim = sim[:, 0] if views == (0,) else sim
    return sim if extra is None else (sim, other)


def fit_grouped(train: np.ndarray, train_groups: list[str], validation: np.ndarray, validation_groups: list[str],
                keep: float = KEEP, k: int = K, folds: int = FOLDS, held_logits: np.ndarray | None = None,
                uncertain_below: float = 0.0, evidence: str = "energy", weight: float = 1.0, labels=None,
                others=None, others_logits: np.ndarray | None = None, gate: tuple[float, float] | None = None,
                held_window_logits: np.ndarray | None = None, window_views: tuple[int, ...] = ()) -> Familiarity:
    """The familiarity of a run, every statistic from clips held out from what scores them:

    * the bank: every view of the training and validation clips' cached features ``(n, views, frames, ...)`` (what
      the shipped models are refit on);
    * each training and validation clip as served is scored against a bank that holds none of its group (the
      groups of each class dealt into ``folds`` folds, each fold against the others' views);
    * with ``held_logits`` (``(n_train + n_validation, classes)``, each clip's logits from a head trained without
      its fold, :func:`har.openset.heldout.held_out_logits`), the score is the model's ``evidence``
      (:func:`evidence_of`)
      plus ``weight`` times the similarity, each standardised by its held-out mean and spread; without, the
      similarity alone;
    * the threshold keeps ``keep`` of new groups' clips, as estimated on the held-out clips
      (:func:`grouped_operating_point`), counting those whose held-out top probability is under
      ``uncertain_below`` as rejected already (the app's decision takes both).

    With clips of other actions (``others``, :class:`har.openset.outliers.Others`; their logits by each fold's head
    ``others_logits`` ``(folds, m, classes)``; the known clips' class ``labels``; ``gate`` = (its weight, its L2
    penalty)), the score adds the gate (:mod:`har.openset.outliers`), whose known clips' scores are held out as
    well, and ``info`` records the leave-other-class-out figures. With ``held_window_logits`` ``(n, views,
    classes)``, each clip's ``window_views`` (its temporal crops, what a timeline's windows look like) scored by the
    same held-out heads, banks and gates give the timeline its own threshold (``info["window_threshold"]``), keeping
    ``keep`` of them as the clip threshold keeps of whole clips.

    Why held out: a threshold set on 18 validation groups alone rejected 15 % of held-out non-test clips on the
    shipped split (docs/openset.md)."""
    x = np.concatenate([train, validation])
    groups = list(train_groups) + list(validation_groups)
    raw = describe(x.reshape(-1, *x.shape[2:])).reshape(len(x), x.shape[1], -1)
    fold = group_folds(groups, folds)
    outliers = others is not None and held_logits is not None
    windows = outliers and held_window_logits is not None and len(window_views) > 0
    held_sim = held_out_similarity(raw, fold, k, others.raw[:, 0] if outliers else None,
                                   (0, *window_views) if windows else (0,))
    held_sim, other_sim = held_sim if outliers else (held_sim, None)
    held_sim, window_sim = (held_sim[:, 0], held_sim[:, 1:]) if windows else (held_sim, None)
    fam = Familiarity.fit(raw.reshape(-1, raw.shape[-1]), raw[:, 0], keep, k)  # the bank: every view of them all
    combine, rejected, score = None, np.zeros(len(x), bool), held_sim
    if held_logits is not None:
        e = evidence_of(held_logits, evidence)
        combine = np.array([e.mean(), max(e.std(), 1e-6), held_sim.mean(), max(held_sim.std(), 1e-6), weight])
        score = combine_scores(combine, e, held_sim)  # both parts held out: banks without the clip's group
        rejected = softmax(held_logits).max(axis=1) < uncertain_below
    gated = None
    if outliers:
        from har.openset.outliers import gate_of

        gated = gate_of(score, raw, np.asarray(labels), held_logits.shape[1], fold, others,
                        np.stack([combine_scores(combine, evidence_of(o, evidence), s)
                                  for o, s in zip(others_logits, other_sim, strict=True)]),
                        gate, keep, rejected, tuple(window_views) if windows else ())
        score = gated.score
        if windows:  # the timeline's threshold: the same score of held-out temporal crops
            ev = np.stack([evidence_of(held_window_logits[:, j], evidence) for j in range(len(window_views))], axis=1)
            crop_scores = combine_scores(combine, ev.ravel(), window_sim.ravel()) + gated.windows.ravel()
            crop_rejected = softmax(held_window_logits.reshape(-1, held_window_logits.shape[-1])).max(axis=1) < \
                uncertain_below
            window_threshold, _, window_share = grouped_operating_point(crop_scores, np.repeat(fold, len(window_views)),
                                                                        keep, crop_rejected)
    threshold, tau, share = grouped_operating_point(score, fold, keep, rejected)
    nested = float(nested_rejected(score, fold, share, rejected).mean())
    what = (f"{evidence} + {weight:g} x similarity"
            f"{f' + {gated.weight:g} x gate' if gated else ''}, each standardised on the {len(x)} training and "
            f"validation clips held out ({folds}-fold group split: heads{', gates' if gated else ''} trained without "
            f"their fold, banks without their group)" if combine is not None else "similarity")
    info = {**fam.info, "method": (f"{evidence}+knn" + ("+gate" if gated else "")) if combine is not None else
            "knn-cosine",
            "threshold": round(threshold, 6), "tau": round(tau, 6), "threshold_from": len(x),
            "knn_weight": weight if combine is not None else None,
            "rejected_by_top_probability": round(float(np.mean(rejected)), 4),
            "kept_in_sample": share, "nested_rejected": round(nested, 4),
            "provenance": f"bank: all {x.shape[1]} views of the {len(x)} training and validation clips; score: {what}; "
                          f"threshold: keeps {share:.2%} of the {len(x)} training and validation clips as served, "
                          f"each scored held out ({folds}-fold group split), the share at which a threshold set on "
                          f"the other folds rejects {nested:.1%} (at most {1 - keep:.0%}) of each fold's clips"}
    if gated:
        info.update(gated.info)
        if windows:
            info.update(window_threshold=round(window_threshold, 6), window_kept_in_sample=window_share,
                        window_threshold_from=int(crop_scores.size))
    return Familiarity(fam.bank, fam.mean, fam.scale, threshold, fam.k, info, combine, evidence,
                       gated.gate if gated else None, gated.combine if gated else None)


