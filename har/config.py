"""Typed configuration that travels with the weights.

Every model directory holds ``config.json`` written from :class:`ModelConfig`; loaders read it back and never
re-derive a constant (classes, frames per clip, frame size, shortest crop, uncertainty threshold).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from har.errors import ModelError

CONFIG_FILE = "config.json"
RENAMED = {"window_s": "whole_clip_window_s", "hop_s": "whole_clip_hop_s"}  # config.json keys of older versions


@dataclass(frozen=True)
class Sampling:
    """How a clip becomes the model's input: ``frames`` RGB frames of ``size`` x ``size`` pixels, uint8."""

    frames: int = 20  # frames taken at equal intervals over the whole clip (the original write-ups used 20)
    size: int = 64  # square side in pixels after area-interpolated resize


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to use (and to explain) a trained model. Written as JSON next to ``model.keras``."""

    arch: str  # "lrcn" or "convlstm"
    preset: str  # "default" (ours) or "tutorial" (the original write-up's network)
    classes: tuple[str, ...]  # label of each softmax output, in output order
    frames: int = 20  # frames per clip, sampled at equal intervals
    size: int = 64  # frame side in pixels
    encoder: str = ""  # imagenet presets: the frozen frame encoder, e.g. "lite0" (EfficientNet-Lite0); "" for none
    encoder_blocks: int = 0  # how many of its MBConv blocks (Lite0 has 16: all of them)
    min_window_s: float = 0.0  # shortest temporal crop trained on, seconds (0: whole clips only)
    # The timeline of a model trained on whole clips only (min_window_s == 0): a window as long as the median
    # training clip, every whole_clip_hop_s; a model trained on crops uses har.serve.timeline's defaults instead.
    whole_clip_window_s: float = 7.0
    whole_clip_hop_s: float = 1.0
    uncertain_below: float = 0.5  # a top probability under this is "none of the known actions"
    seed: int = 0  # the one seed of the training run (split, weights init, augmentation)
    data: str = ""  # name of the dataset folder trained on
    split: dict[str, list[str]] = field(default_factory=dict)  # "train"/"validation"/"test" -> group keys
    epochs: int = 0  # epochs actually run (early stopping may end sooner)
    best_epoch: int = 0  # 1-based epoch whose weights were kept (best validation loss)
    train_seconds: float = 0.0  # wall-clock seconds of the fit, all epochs
    params: int = 0  # trainable + non-trainable parameters
    hyper: dict[str, float | int | str] = field(default_factory=dict)  # learning rate, batch size, ...
    openset: dict = field(default_factory=dict)  # familiarity score: method, threshold, provenance (har.openset)
    taught: dict = field(default_factory=dict)  # a taught model: base, digest, new classes, examples (har.teach)
    versions: dict[str, str] = field(default_factory=dict)  # python, tensorflow, keras, opencv at training time

    @property
    def sampling(self) -> Sampling:
        return Sampling(frames=self.frames, size=self.size)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=False) + "\n"

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ModelConfig:
        path = Path(directory) / CONFIG_FILE
        if not path.is_file():
            raise ModelError(f"Model directory {directory} has no {CONFIG_FILE}; it is not a trained model.")
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path} is not readable JSON: {exc}.") from exc
        raw = {RENAMED.get(k, k): v for k, v in raw.items()} if isinstance(raw, dict) else raw
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ModelError(f"{path} has fields this version does not know: {', '.join(unknown)}.")
        missing = [n for n in ("arch", "preset", "classes") if n not in raw]
        if missing:
            raise ModelError(f"{path} lacks required fields: {', '.join(missing)}.")
        raw["classes"] = tuple(raw["classes"])
        return cls(**raw)
