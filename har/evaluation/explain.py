"""Why this answer: which of its frames, and which parts of them, a model relied on for its top class.

Two measures, both computed by the model itself, on demand only (plain recognition never runs them):

* **Frame importance** by occlusion: each frame in turn is replaced by the mean of its two neighbours (the first
  and last by their one neighbour), as if it had not been filmed, and the clip is run again; all ``frames``
  variants go through the served runtime in one batch. ``drop[t]`` is how much the top class's log-odds,
  ``log(p / (1 - p))``, fall without frame ``t`` (negative when they rise; log-odds, unlike the probability, still
  move when the answer is 99.99 % sure); ``importance`` is the drops clipped at zero and normalised to sum to 1
  (all zeros when no single frame's absence lowers it).
* **Where in each frame** by Grad-CAM (Selvaraju et al., 2017) on the last per-frame feature maps (the ImageNet
  encoder's, 4x4 at 64 px), through the temporal part: the gradient of the top class's log-probability weights
  each map's channels per frame, the weighted sum is clipped at zero, normalised over the whole clip (so frames
  compare) and resized to the frame. This needs TensorFlow's gradients: a model served by ONNX Runtime loads its
  Keras copy the first time it is explained.

:func:`strip` draws one row per explanation: each sampled frame with its heat map laid over it and a bar of its
importance below; :meth:`Explanation.summary` says the same in words.
"""

from __future__ import annotations

import json
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from har.errors import HarError, ModelError
from har.media.limits import check_length
from har.media.video import probe, sample_clip, sample_indices, sample_span

HEAT_ALPHA = 0.45  # share of the heat map's colour laid over a frame
_HALVES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # keras.Model -> (to its maps, from its maps on)


@dataclass(frozen=True)
class Explanation:
    """One model's reasons for its top class on one clip (or window)."""

    model: str  # recognizer name, e.g. "lrcn"
    label: str  # the class explained: the model's top class
    probability: float  # its probability on the intact clip
    frames: np.ndarray  # (T, size, size, 3) uint8 RGB, the frames the model saw
    times_s: np.ndarray  # (T,) where each frame sits in the video, seconds
    drop: np.ndarray  # (T,) log-odds of ``label`` lost when that frame is occluded (< 0: gained)
    importance: np.ndarray  # (T,) drops clipped at 0, normalised to sum 1 (all 0 when none is positive)
    heatmaps: np.ndarray  # (T, size, size) float32 in [0, 1], Grad-CAM resized to the frame

    def top_frames(self, share: float = 0.5) -> list[int]:
        """The fewest frames (0-based, in time order) whose importance adds up to ``share`` of the total."""
        if not self.importance.any():
            return []
        order = np.argsort(-self.importance, kind="stable")
        n = int(np.searchsorted(np.cumsum(self.importance[order]), share - 1e-9)) + 1
        return sorted(order[:n].tolist())

    def region(self) -> str:
        """Where the heat lies, in words: the hottest ninth of the picture ("the top left", "the centre", ...)
        over the most important frames, or "most of the picture" when more than half of it is at least half as
        hot as the hottest point."""
        chosen = self.top_frames() or list(range(len(self.frames)))
        heat = self.heatmaps[chosen].sum(axis=0)
        if heat.max() <= 0:
            return "no region in particular"
        if float((heat > 0.5 * heat.max()).mean()) > 0.5:
            return "most of the picture"
        h, w = heat.shape
        cells = np.array([[heat[i * h // 3:(i + 1) * h // 3, j * w // 3:(j + 1) * w // 3].sum() for j in range(3)]
                          for i in range(3)])
        i, j = np.unravel_index(int(cells.argmax()), cells.shape)
        where = {(1, 1): "centre", (1, 0): "left", (1, 2): "right", (0, 1): "top centre", (2, 1): "bottom centre"}
        return f"the {where.get((i, j), ('top', '', 'bottom')[i] + ' ' + ('left', '', 'right')[j])} of the picture"

    def summary(self, name: str | None = None) -> str:
        """``"LRCN (Archery, 93%) relied most on frames 12-16 of 20 (4.1-5.5 s), on the bottom left of the
        picture."``: the fewest frames holding half the importance, and :meth:`region`."""
        who = name or self.model
        frames = self.top_frames()
        if not frames:
            return (f"{who} ({self.label}, {self.probability:.0%}): no single frame's absence lowers its answer; "
                    f"its attention lies on {self.region()}.")
        runs = _runs(frames)
        text = ", ".join(f"{a + 1}" if a == b else f"{a + 1}-{b + 1}" for a, b in runs)
        first, last = self.times_s[frames[0]], self.times_s[frames[-1]]
        span = f"{first:.1f} s" if f"{first:.1f}" == f"{last:.1f}" else f"{first:.1f}-{last:.1f} s"
        noun = "frame" if len(frames) == 1 else "frames"
        return (f"{who} ({self.label}, {self.probability:.0%}) relied most on {noun} {text} of {len(self.frames)} "
                f"({span}), on {self.region()}.")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "label": self.label, "probability": round(self.probability, 4),
                "times_s": np.round(self.times_s, 3).tolist(), "drop": np.round(self.drop, 4).tolist(),
                "importance": np.round(self.importance, 4).tolist(), "summary": self.summary()}


def explain(recognizer, path: str | os.PathLike, start_s: float | None = None,
            end_s: float | None = None) -> Explanation:
    """Explain ``recognizer``'s top class on the video at ``path``: the whole video sampled as in training, or the
    window from ``start_s`` to ``end_s`` seconds (as a timeline samples it). Raises :class:`VideoError` for an
    unusable video and :class:`ModelError` for a model whose graph has no per-frame feature maps."""
    return explain_all([recognizer], path, start_s, end_s)[0]


def explain_all(recognizers, path: str | os.PathLike, start_s: float | None = None,
                end_s: float | None = None, progress=None) -> list[Explanation]:
    """:func:`explain` for several recognizers on one video; those that sample alike share one sampling pass.
    ``progress(fraction, message)`` before each model."""
    p = Path(path)
    info = probe(p)
    check_length(p, info.duration_s)
    fps = info.fps or 25.0
    sampled: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # (frames, size) -> (clip, times)
    out = []
    for i, rec in enumerate(recognizers):
        c = rec.config
        key = (c.frames, c.size)
        if key not in sampled:
            if start_s is None and end_s is None:
                sampled[key] = (sample_clip(p, c.frames, c.size),
                                sample_indices(max(info.frame_count, 1), c.frames) / fps)
            else:
                sampled[key] = sample_span(p, c.frames, c.size, start_s or 0.0, end_s)
        if progress is not None:
            progress(i / len(recognizers), f"explaining {rec.name}")
        out.append(explain_clip(rec, *sampled[key]))
    return out


def explain_clip(recognizer, clip: np.ndarray, times_s: np.ndarray | None = None) -> Explanation:
    """Explain ``recognizer``'s top class on one uint8 clip ``(frames, size, size, 3)``."""
    c = recognizer.config
    assert clip.shape == (c.frames, c.size, c.size, 3) and clip.dtype == np.uint8, (clip.shape, clip.dtype)
    variants = np.concatenate([clip[None], occluded(clip)])  # (1 + T, T, size, size, 3): intact, then each frame out
    probs = recognizer.probabilities(variants).astype(np.float64)  # one batched pass, served runtime
    k = int(probs[0].argmax())
    odds = log_odds(probs, k)
    drop = (odds[0] - odds[1:]).astype(np.float32)
    positive = np.maximum(drop, 0.0)
    importance = positive / positive.sum() if positive.sum() > 0 else np.zeros_like(positive)
    heat = grad_cam(recognizer.keras_model, clip, k)
    times = np.arange(c.frames, dtype=np.float64) if times_s is None else np.asarray(times_s, np.float64)
    return Explanation(recognizer.name, c.classes[k], float(probs[0, k]), clip, times, drop,
                       importance.astype(np.float32), heat)


def log_odds(probs: np.ndarray, k: int) -> np.ndarray:
    """``log(p_k / (1 - p_k))`` per row, from the probabilities of the other classes (no saturation at p = 1)."""
    rest = np.delete(probs, k, axis=1).sum(axis=1)
    return np.log(np.maximum(probs[:, k], 1e-12)) - np.log(np.maximum(rest, 1e-12))


def occluded(clip: np.ndarray) -> np.ndarray:
    """``(T, T, H, W, 3)``: variant ``t`` is ``clip`` with frame ``t`` replaced by the mean of its neighbours."""
    t = len(clip)
    out = np.repeat(clip[None], t, axis=0)
    wide = clip.astype(np.uint16)
    for i in range(t):
        a, b = wide[max(i - 1, 0)], wide[min(i + 1, t - 1)]
        if i == 0:
            a = b
        if i == t - 1:
            b = a
        out[i, i] = ((a + b + 1) // 2).astype(np.uint8)
    return out


def feature_maps_layer(model):
    """The last layer whose output is per-frame feature maps ``(batch, steps, h, w, channels)`` with ``h, w > 1``;
    the rest of the graph must read only it (a Keras sub-model is cut there). Raises :class:`ModelError`."""
    import keras

    for layer in reversed(model.layers):
        if type(layer).__name__ == "InputLayer":  # pixels are not features
            break
        shape = tuple(layer.output.shape)
        if len(shape) == 5 and shape[2] and shape[2] > 1 and shape[3] and shape[3] > 1:
            try:
                head = keras.Model(layer.output, model.outputs[0])
            except ValueError:  # a later layer also reads an earlier tensor
                continue
            return layer, head
    raise ModelError(f"{model.name} has no per-frame feature maps that the rest of it reads alone: it cannot be "
                     "explained with Grad-CAM.")


def grad_cam(model, clip: np.ndarray, k: int) -> np.ndarray:
    """``(T, size, size)`` float32 in [0, 1]: Grad-CAM of class ``k`` on the last per-frame feature maps of
    ``model`` (a ``keras.Model``) for one uint8 clip ``(T, size, size, 3)``."""
    import keras
    import tensorflow as tf

    if model not in _HALVES:  # built once per model: cutting a graph costs more than explaining a clip
        layer, head = feature_maps_layer(model)
        _HALVES[model] = (keras.Model(model.inputs[0], layer.output), head)
    front, head = _HALVES[model]
    maps = tf.convert_to_tensor(front(clip[None], training=False))  # (1, steps, h, w, channels)
    with tf.GradientTape() as tape:
        tape.watch(maps)
        score = tf.math.log(tf.maximum(head(maps, training=False)[0, k], 1e-7))
    grads = tape.gradient(score, maps)[0].numpy()  # (steps, h, w, channels)
    a = maps[0].numpy()
    weights = grads.mean(axis=(1, 2), keepdims=True)  # (steps, 1, 1, channels): each frame's channels
    cam = np.maximum((weights * a).sum(axis=-1), 0.0)  # (steps, h, w)
    top = cam.max()
    cam = cam / top if top > 0 else cam
    steps, size = cam.shape[0], clip.shape[1]
    heat = np.stack([cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR) for m in cam])
    if steps < len(clip):  # motion models read frame pairs: step s pairs frames s and s + 1; frame 0 shares step 0
        heat = np.concatenate([heat[:1], heat])[: len(clip)]
    return np.clip(heat, 0.0, 1.0).astype(np.float32)


def strip(explanations: list[Explanation], names: list[str] | None = None, tile: int = 96,
          titles: list[str] | None = None) -> np.ndarray:
    """One row per explanation: its frames (``tile`` px) with the heat map laid over, each frame's importance as a
    bar below, and the summary above (after ``titles[i]`` when given). RGB uint8."""
    assert explanations
    names = names or [e.model for e in explanations]
    titles = titles or [""] * len(explanations)
    rows = []
    for e, name, title in zip(explanations, names, titles, strict=True):
        t = len(e.frames)
        width = t * tile
        caption = np.full((28, width, 3), 255, np.uint8)
        cv2.putText(caption, _ascii(f"{title}{e.summary(name)}"), (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (20, 20, 20), 1, cv2.LINE_AA)
        tiles, bars = [], []
        top = float(e.importance.max()) or 1.0
        for i in range(t):
            frame = cv2.resize(e.frames[i], (tile, tile), interpolation=cv2.INTER_NEAREST)
            heat = cv2.resize(e.heatmaps[i], (tile, tile), interpolation=cv2.INTER_LINEAR)
            colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]  # BGR -> RGB
            mix = (frame * (1 - HEAT_ALPHA * heat[..., None]) + colour * HEAT_ALPHA * heat[..., None])
            tiles.append(mix.clip(0, 255).astype(np.uint8))
            bar = np.full((36, tile, 3), 255, np.uint8)
            h = max(1, int(round(20 * float(e.importance[i]) / top)))  # a hairline for an unimportant frame
            bar[22 - h : 22, 4 : tile - 4] = (214, 39, 40) if e.drop[i] > 0 else (180, 180, 180)
            cv2.putText(bar, f"{i + 1}  {e.times_s[i]:.1f}s", (4, 33), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (90, 90, 90),
                        1, cv2.LINE_AA)
            bars.append(bar)
        rows.append(np.concatenate([caption, np.concatenate(tiles, axis=1), np.concatenate(bars, axis=1)]))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows)


STORED_IMAGE, STORED_JSON = "explained.jpg", "explained.json"  # in a model directory: one example clip per class


def explain_examples(recognizer, clips: dict[str, Path], out_dir: str | os.PathLike, name: str | None = None) -> Path:
    """Explain ``recognizer`` on one clip per class (``{class: path}``), stored in ``out_dir`` (its model
    directory) as one image, a row per clip, and a JSON file of the numbers; the dashboard shows them. ``name``:
    the model's name in the words (default the recognizer's)."""
    found = [explain(recognizer, path) for path in clips.values()]
    titles = [f"{label} clip: " for label in clips]
    out = Path(out_dir)
    save_strip(strip(found, [name or e.model for e in found], titles=titles), out / STORED_IMAGE)
    records = [{"clip": Path(path).name, "class": label, **e.to_dict(), "summary": e.summary(name)}
               for (label, path), e in zip(clips.items(), found, strict=True)]
    (out / STORED_JSON).write_text(json.dumps(records, indent=1) + "\n")
    return out / STORED_IMAGE


def save_strip(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an RGB strip as PNG or JPEG (by the suffix)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), image[..., ::-1]):
        raise HarError(f"Could not write {out}: use a .png or .jpg file name.")
    return out


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """``[3, 4, 5, 9]`` -> ``[(3, 5), (9, 9)]``."""
    out: list[tuple[int, int]] = []
    for i in indices:
        if out and i == out[-1][1] + 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def _ascii(text: str) -> str:
    return text.replace("\u2013", "-").encode("ascii", "replace").decode()
