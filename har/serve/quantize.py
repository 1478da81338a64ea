"""The int8 copy of a model's per-frame half, for serving on a CPU.

``python -m har export --model lrcn --data DATASET`` writes ``frame.int8.onnx`` beside ``frame.onnx``
(:mod:`har.serve.export`): ONNX Runtime's static quantization in QDQ form, weights int8 per output channel,
activations uint8 per tensor, their ranges calibrated (min-max) on frames of the model's *training* groups only
(``config.json`` ``split``: :data:`CALIBRATION_FRAMES` frames of the first clip of each group). The validation and
test groups never set a range; the check runs on the validation groups' frames. The first :data:`FLOAT_CONVS`
convolutions (the encoder's stem and first block, on the raw image at full resolution) stay float: quantized, they
cost the most agreement (on the ConvLSTM's validation frames the worst frame's cosine to float was 0.964 with them in
int8, 0.988 without; the LRCN's 0.970 and 0.990).

The per-frame half is the frozen ImageNet encoder, nearly all of a clip's arithmetic; the head (an LSTM or a ConvLSTM
over 20 feature vectors or maps) stays float. On a CPU with VNNI (this project's, and a Space's CPU upgrade) the int8
half runs a frame in about half the float half's time (``models/*/benchmark.json``, ``int8``).

The copy is checked before it is kept, against the float half it was made from, on frames it was not calibrated on:
every frame's features must point the float features' way to within a cosine of :data:`MIN_COSINE`, and their mean
cosine must reach :data:`MEAN_COSINE`. Both figures are stored in its metadata beside the ``model.keras`` digest the
float halves carry, so a model retrained since never serves a stale int8 copy
(:func:`har.serve.backends.onnx_sessions`).
What the check cannot see (a class decision, the open-set decision) is measured on the model's test groups by
``benchmarks/bench_int8.py`` and stored in ``benchmark.json``.

The open-set score (:mod:`har.openset.score`) reads the served half's features and the head's logits over them. Its
bank holds float features, and int8 features sit a little further from every bank descriptor: the similarity drops
for every clip alike (and the energy moves a little), which rejected more known clips than float does. The int8 copy
therefore carries its own standardisation offsets (:func:`openset_shift`, metadata :data:`SHIFT_KEY`): the mean
change of the evidence and of the similarity from float to int8 over every clip of the training and validation
groups (never a test group), which :func:`int8_familiarity` adds to the score's means when the int8 half serves.
The bank, the weights and the threshold stay those of the float fit.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np

from har.errors import ModelError
from har.serve.export import DIGEST_KEY, FRAME_FILE, keras_digest

log = logging.getLogger(__name__)

INT8_FILE = "frame.int8.onnx"  # the per-frame half, int8: uint8 frames (n, size, size, 3) -> features float32
CALIBRATION_FRAMES = 5  # frames of the first clip of each training group (66 groups: 330 frames)
CHECK_FRAMES = 5  # frames of the first clip of each validation group, for the check
FLOAT_CONVS = 3  # the first convolutions in graph order left in float (stem, first block's depthwise and projection)
# Every checked frame's features: cosine to the float half's at least this. Over all 2,200 frames of the test groups'
# clips the worst was 0.971 (LRCN) and 0.963 (ConvLSTM), the mean 0.995 and 0.994 (one frame in a thousand below
# 0.983 and 0.979): the bound leaves room for frames the check does not see, the mean is the tight one.
MIN_COSINE = 0.95
MEAN_COSINE = 0.99  # and on average at least this
COSINE_KEYS = ("har.int8_min_cosine", "har.int8_mean_cosine")  # metadata: the check's figures
SHIFT_KEY = "har.openset_shift"  # metadata: JSON {"evidence", "similarity", "clips"}, int8 minus float, mean
BATCH = 32  # frames per call, calibrating and checking


def frames_of_groups(directory: Path, data: str | os.PathLike, split: str, per_clip: int) -> np.ndarray:
    """``per_clip`` frames (sampled as in training) of the first clip of each of the model's ``split`` groups in
    ``data``: uint8 ``(groups * per_clip, size, size, 3)``. Raises :class:`ModelError` when none is found."""
    from har.config import ModelConfig
    from har.data.dataset import clips_of, index_dataset
    from har.media.video import sample_clip

    config = ModelConfig.load(directory)
    groups = (config.split or {}).get(split, [])
    first: dict[str, Path] = {}
    for clip in clips_of(index_dataset(data), groups):
        first.setdefault(clip.group, clip.path)
    if not first:
        raise ModelError(f"No clip of {directory.name}'s {split} groups ({len(groups)} in its config.json) is in "
                         f"{data}: give the dataset it was trained on.")
    return np.concatenate([sample_clip(path, per_clip, config.size) for _, path in sorted(first.items())])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine ``(n,)`` between each row of features ``a`` and ``b`` ``(n, ...)``."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return (a * b).sum(axis=1) / norms


def features(session, frames: np.ndarray) -> np.ndarray:
    """An ONNX Runtime per-frame half's features of uint8 ``frames``, in batches of :data:`BATCH`."""
    name = session.get_inputs()[0].name
    return np.concatenate([np.asarray(session.run(None, {name: frames[i : i + BATCH]})[0], np.float32)
                           for i in range(0, len(frames), BATCH)])


def check_int8(float_session, int8_session, frames: np.ndarray) -> tuple[float, float]:
    """``(min, mean)`` cosine between the int8 and float halves' features of ``frames``; a :class:`ModelError`
    when either is below its bound (:data:`MIN_COSINE`, :data:`MEAN_COSINE`)."""
    cos = cosines(features(float_session, frames), features(int8_session, frames))
    low, mean = float(cos.min()), float(cos.mean())
    if not (low >= MIN_COSINE and mean >= MEAN_COSINE):
        raise ModelError(f"The int8 per-frame half's features differ from the float half's: cosine {low:.4f} at "
                         f"worst and {mean:.4f} on average over {len(frames)} frames (at least {MIN_COSINE} and "
                         f"{MEAN_COSINE} needed); not kept.")
    return low, mean


def quantize_frame(model: str | os.PathLike, data: str | os.PathLike) -> Path:
    """Write ``frame.int8.onnx`` beside the model directory's current ``frame.onnx``, calibrated on ``data``'s
    training groups and checked on its validation groups (:func:`check_int8`); returns its path. Raises
    :class:`ModelError` when there is no current float half or the check fails (nothing is written then)."""
    import onnx

    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # else it looks up a Microsoft events host
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from har.modeldir import resolve_model_dir

    directory = resolve_model_dir(model)
    source = directory / FRAME_FILE
    digest = keras_digest(directory)
    if not source.is_file():
        raise ModelError(f"{directory.name} has no {FRAME_FILE}: run `python -m har export --model {directory}`.")
    float_session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    if float_session.get_modelmeta().custom_metadata_map.get(DIGEST_KEY) != digest:
        raise ModelError(f"{source} was not made from the present model.keras: run `python -m har export --model "
                         f"{directory}` first.")
    calibration = frames_of_groups(directory, data, "train", CALIBRATION_FRAMES)
    check = frames_of_groups(directory, data, "validation", CHECK_FRAMES)
    input_name = float_session.get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(range(0, len(calibration), BATCH))

        def get_next(self):
            i = next(self.batches, None)
            return None if i is None else {input_name: calibration[i : i + BATCH]}

    pre = directory / f".{INT8_FILE}.{os.getpid()}.pre.tmp"
    tmp = directory / f".{INT8_FILE}.{os.getpid()}.tmp"
    try:
        quant_pre_process(str(source), str(pre))  # shapes inferred, graph optimised: what the quantizer expects
        convs = [node.name for node in onnx.load(str(pre)).graph.node if node.op_type == "Conv"]
        quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=convs[:FLOAT_CONVS])
        low, mean = check_int8(float_session, ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"]),
                               check)
        entries = {DIGEST_KEY: digest, COSINE_KEYS[0]: f"{low:.5f}", COSINE_KEYS[1]: f"{mean:.5f}"}
        shift = openset_shift(directory, data, tmp)
        if shift is not None:
            entries[SHIFT_KEY] = json.dumps(shift)
        stamp(tmp, entries)
        os.replace(tmp, directory / INT8_FILE)
    finally:
        pre.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    log.info("%s: wrote %s (features' cosine to float: %.4f at worst, %.4f on average, %d validation frames)",
             directory.name, INT8_FILE, low, mean, len(check))
    return directory / INT8_FILE


def stamp(path: Path, entries: dict[str, str]) -> None:
    """Set metadata ``entries`` of the ONNX file at ``path`` (replacing those of the same keys)."""
    import onnx

    proto = onnx.load(str(path))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    for key, value in [*kept, *entries.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def openset_shift(directory: Path, data: str | os.PathLike, int8_path: Path) -> dict | None:
    """The mean change, int8 minus float, of the open-set score's evidence, similarity and gate (where it has one)
    over every clip of the model's training and validation groups in ``data`` (sampled as served), ``int8_path``
    serving the per-frame half beside the float head; None for a model without a combined open-set score."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    from har.config import ModelConfig
    from har.data.dataset import clips_of, index_dataset, load_frames
    from har.openset.score import Familiarity, describe, evidence_of
    from har.serve.export import HEAD_FILE, run_onnx_outputs

    familiarity = Familiarity.load(directory)
    if familiarity is None or familiarity.combine is None:
        return None
    config = ModelConfig.load(directory)
    clips = clips_of(index_dataset(data), [*config.split["train"], *config.split["validation"]])
    frames = load_frames(clips, config.sampling, desc="int8 open-set offsets")  # (clips, frames, size, size, 3)
    head = ort.InferenceSession(str(directory / HEAD_FILE), providers=["CPUExecutionProvider"])
    scores = []
    for frame_path in (directory / FRAME_FILE, int8_path):
        half = ort.InferenceSession(str(frame_path), providers=["CPUExecutionProvider"])
        raw, logits = [], []
        for clip in frames:  # (frames, size, size, 3) -> features (frames, ...) -> the head's logits of the clip
            f = features(half, clip)
            raw.append(describe(f[None])[0])
            logits.append(run_onnx_outputs(head, f[None])[1][0])
        gate = familiarity.gated(np.stack(raw))
        scores.append((evidence_of(np.stack(logits), familiarity.evidence), familiarity.similarity(np.stack(raw)),
                       np.zeros(len(raw)) if gate is None else gate))
    (ev_f, sim_f, gate_f), (ev_8, sim_8, gate_8) = scores
    return {"evidence": round(float((ev_8 - ev_f).mean()), 6), "similarity": round(float((sim_8 - sim_f).mean()), 6),
            **({"gate": round(float((gate_8 - gate_f).mean()), 6)} if familiarity.gate is not None else {}),
            "clips": len(clips)}


def refresh_openset_shift(directory: str | os.PathLike, data: str | os.PathLike) -> dict | None:
    """Measure the open-set offsets of ``directory``'s int8 half again (:func:`openset_shift`) and store them in it,
    after its open-set score was fitted anew; None (and nothing changed) where there is no int8 half or no
    combined score."""
    directory = Path(directory)
    path = directory / INT8_FILE
    if not path.is_file():
        return None
    shift = openset_shift(directory, data, path)
    if shift is not None:
        tmp = directory / f".{INT8_FILE}.{os.getpid()}.tmp"
        try:
            tmp.write_bytes(path.read_bytes())
            stamp(tmp, {SHIFT_KEY: json.dumps(shift)})
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        log.info("%s: open-set offsets of %s measured again: %s", directory.name, INT8_FILE, shift)
    return shift


def int8_familiarity(familiarity, session):
    """``familiarity`` (:class:`har.openset.score.Familiarity`) for features of the int8 half served by ``session``:
    its evidence and similarity means moved by the offsets stored in the file (:func:`openset_shift`); unchanged
    for a score without them."""
    shift = session.get_modelmeta().custom_metadata_map.get(SHIFT_KEY)
    if familiarity is None or familiarity.combine is None or shift is None:
        return familiarity
    offsets = json.loads(shift)
    combine = np.asarray(familiarity.combine, np.float64).copy()
    combine[0] += offsets["evidence"]  # [evidence mean, evidence std, similarity mean, similarity std, weight]
    combine[2] += offsets["similarity"]
    gate = familiarity.gate_combine
    if gate is not None and "gate" in offsets:  # [gate mean, gate std, weight]
        gate = np.asarray(gate, np.float64).copy()
        gate[0] += offsets["gate"]
    return dataclasses.replace(familiarity, combine=combine, gate_combine=gate)
