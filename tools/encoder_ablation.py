"""Issue 16's ablation: frame size x frozen EfficientNet-Lite encoder x depth, by group cross-validation on cached
features, each row beside a linear probe of the same features.

The encoder is frozen, so a clip's features are computed once per (encoder, size) for its un-augmented frames
(``view 0``: the segment centres, what serving sees) and for ``--views`` augmented views (``har.data.augment``'s
``augment_clip`` on the dense training cache, seeded per clip and view, the same draws for every encoder and size),
and kept under ``scratch/`` as float16 ``.npy``. Only the temporal heads are trained, on the cached features: every
epoch each training clip shows one of its augmented views, drawn at random, as training shows a fresh augmentation
each epoch; validation reads view 0.

Folds exactly as ``tools/cross_validate.py`` deals them: the shipped split's (seed 0) test groups are taken out first
and never read (not even decoded), the other groups of each class are dealt into 4 folds.

Depths: ``s3`` = through stage 3 (Lite0: today's 8 blocks, 80 channels; Lite1/Lite2: 11 blocks), ``all`` = every
MBConv block (16 / 21; 320 / 352 channels), ``head`` = every block and the 1280-channel head convolution (the whole
network without its classifier).

    python tools/encoder_ablation.py features --variant lite0 --size 128 [--views 4] [--maps head]
    python tools/encoder_ablation.py probe [--variant ... --size ...]        # every cached (encoder, size)
    python tools/encoder_ablation.py head --variant lite0 --size 128 --depth head --recipe shipped
    python tools/encoder_ablation.py bench --variant lite0 --size 128 --depth head --arch lrcn
    python tools/encoder_ablation.py table                                     # markdown from results.jsonl

Results are appended to ``OUT/results.jsonl`` (one JSON object a run); ``table`` prints them. The probes need
scikit-learn, which the app and the tests do not: ``pip install scikit-learn`` before running this tool.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
from cross_validate import fold_split  # noqa: E402

log = logging.getLogger("ablation")
FOLDS = 4
FRAMES = 20
DEPTHS = ("s3", "all", "head")
STAGE3_BLOCKS = {"lite0": 8, "lite1": 11, "lite2": 11}  # MBConv blocks through stage 3 (80 / 80 / 88 channels)
VIEW_SEED = 1000  # augmented view v of clip i draws from the stateless seed (VIEW_SEED + v, i)


# ---------------------------------------------------------------------------------------------------------------
# Clips and folds


def non_test(data: Path):
    """(index, non-test clips in index order, fold of each clip) for the shipped split of seed 0."""
    from har.data.dataset import clips_of, index_dataset

    index = index_dataset(data)
    splits = [fold_split(index, f, FOLDS) for f in range(FOLDS)]
    groups = sorted(set(splits[0]["train"]) | set(splits[0]["validation"]))
    clips = clips_of(index, groups)
    fold_of_group = {g: f for f, s in enumerate(splits) for g in s["validation"]}
    folds = np.array([fold_of_group[c.group] for c in clips])
    return index, clips, folds


def feature_dir(out: Path, variant: str, size: int) -> Path:
    return out / "features" / f"{variant}_{size}"


def depth_blocks(variant: str, depth: str) -> int:
    from har.models import backbone

    return STAGE3_BLOCKS[variant] if depth == "s3" else backbone.num_blocks(variant)


# ---------------------------------------------------------------------------------------------------------------
# Features


def multi_depth_encoder(variant: str, size: int, weights: Path):
    """The whole ``variant`` (head conv included), frozen, with the three depths' feature maps as outputs."""
    import keras

    from har.models import backbone

    enc = backbone.pretrained_encoder(backbone.num_blocks(variant), size, variant=variant, head_conv=True,
                                      path=weights)
    last = f"b{STAGE3_BLOCKS[variant] - 1}"
    s3 = enc.get_layer(f"{last}_add" if f"{last}_add" in {la.name for la in enc.layers} else f"{last}_project_bn")
    all_ = enc.get_layer(f"b{backbone.num_blocks(variant) - 1}_project_bn")
    return keras.Model(enc.input, [s3.output, all_.output, enc.output], name="multi_depth")


def features(args) -> None:
    """Pooled vectors (clips, views, frames, C) float16 per depth, and feature maps where ``--maps`` asks."""
    import tensorflow as tf

    from har.config import Sampling
    from har.data import augment
    from har.data.dataset import load_frames
    from har.models import backbone

    index, clips, folds = non_test(args.data)
    target = feature_dir(args.out, args.variant, args.size)
    target.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    dense = load_frames(clips, Sampling(FRAMES * augment.DENSE, args.size), args.cache_dir, workers=2, desc=None)
    decode_s = time.perf_counter() - started
    net = multi_depth_encoder(args.variant, args.size, args.weights or args.out.parent / "weights"
                              / f"{args.variant}_imagenet.npz")
    run = tf.function(lambda x: net(x, training=False), reduce_retracing=True)
    views = 1 + args.views
    pooled = {d: None for d in DEPTHS}
    maps = {d: None for d in args.maps}
    started = time.perf_counter()
    for i, clip_frames in enumerate(dense):
        x = tf.constant(clip_frames)
        stack = [augment.centre(x, FRAMES)] + [
            augment.augment_clip(x, tf.constant([VIEW_SEED + v, i], tf.int64), FRAMES) for v in range(args.views)]
        batch = tf.cast(tf.concat(stack, 0), tf.float32) * backbone.SCALE + backbone.OFFSET  # (views*20, s, s, 3)
        outs = dict(zip(DEPTHS, run(batch), strict=True))
        for d, fmap in outs.items():
            fmap = fmap.numpy().reshape(views, FRAMES, *fmap.shape[1:])  # (views, frames, h, w, c)
            if pooled[d] is None:
                pooled[d] = np.zeros((len(clips), views, FRAMES, fmap.shape[-1]), np.float16)
            pooled[d][i] = fmap.mean(axis=(2, 3))
            if d in maps:
                if maps[d] is None:
                    maps[d] = np.lib.format.open_memmap(target / f"maps_{d}_v{args.views}.npy", "w+", np.float16,
                                                        (len(clips), *fmap.shape))
                maps[d][i] = fmap
        if i % 50 == 0:
            log.info("%s %d px: clip %d/%d, %.0f s", args.variant, args.size, i, len(clips),
                     time.perf_counter() - started)
    encode_s = time.perf_counter() - started
    for d in DEPTHS:
        np.save(target / f"pooled_{d}_v{args.views}.npy", pooled[d])
    for m in maps.values():
        m.flush()
    np.save(target / "labels.npy", index.labels(clips))
    np.save(target / "folds.npy", folds)
    meta = {"variant": args.variant, "size": args.size, "views": args.views, "clips": len(clips),
            "decode_s": round(decode_s, 1), "encode_s": round(encode_s, 1),
            "encode_ms_per_frame": round(1000 * encode_s / (len(clips) * views * FRAMES), 3),
            "maps": list(args.maps), "shapes": {d: list(pooled[d].shape) for d in DEPTHS}}
    (target / f"meta_v{args.views}.json").write_text(json.dumps(meta, indent=1) + "\n")
    log.info("features %s", meta)


def load_pooled(out: Path, variant: str, size: int, depth: str, views: int | None = None):
    """(pooled (clips, views, frames, C) float16, labels, folds) of the largest cached view count."""
    target = feature_dir(out, variant, size)
    if views is None:
        views = max(int(p.stem.split("_v")[-1]) for p in target.glob(f"pooled_{depth}_v*.npy"))
    return (np.load(target / f"pooled_{depth}_v{views}.npy"), np.load(target / "labels.npy"),
            np.load(target / "folds.npy"), views)


# ---------------------------------------------------------------------------------------------------------------
# Scores shared by the probe and the heads


def scores(labels: np.ndarray, pred: np.ndarray, classes: tuple[str, ...]) -> dict:
    recall = {c: float(np.mean(pred[labels == k] == k)) for k, c in enumerate(classes)}
    return {"accuracy": float(np.mean(pred == labels)), "right": int(np.sum(pred == labels)), "clips": len(labels),
            "violin_recall": recall["PlayingViolin"], "piano_recall": recall["PlayingPiano"],
            "recall": {c: round(r, 3) for c, r in recall.items()}}


def mean_std(x: np.ndarray) -> np.ndarray:
    """(clips, frames, C) -> (clips, 2C): each clip's mean and standard deviation over its frames."""
    x = x.astype(np.float32)
    return np.concatenate([x.mean(axis=1), x.std(axis=1)], axis=1)


def probe_row(pooled: np.ndarray, labels: np.ndarray, folds: np.ndarray, classes, augmented: bool = False) -> dict:
    """Logistic regression (standardised inputs, L2, C=1, sklearn's defaults otherwise) on [mean, std] over frames,
    fitted on the training folds' view 0 (``augmented``: on all their views) and scored on the fold's view 0."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pred = np.zeros(len(labels), np.int64)
    losses = []
    for f in range(FOLDS):
        tr, va = folds != f, folds == f
        if augmented:
            xs = np.concatenate([mean_std(pooled[tr, v]) for v in range(pooled.shape[1])])
            ys = np.tile(labels[tr], pooled.shape[1])
        else:
            xs, ys = mean_std(pooled[tr, 0]), labels[tr]
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
        clf.fit(xs, ys)
        p = clf.predict_proba(mean_std(pooled[va, 0]))
        pred[va] = p.argmax(1)
        losses.append(float(log_loss(labels[va], p, labels=np.arange(len(classes)))))
    return {**scores(labels, pred, classes), "mean_val_loss": float(np.mean(losses)),
            "fold_losses": [round(v, 4) for v in losses]}


def probe(args) -> None:
    from har.data.dataset import index_dataset

    classes = index_dataset(args.data).classes
    targets = sorted((args.out / "features").glob("*_*")) if args.variant is None else [
        feature_dir(args.out, args.variant, args.size)]
    for target in targets:
        variant, size = target.name.split("_")
        for depth in DEPTHS:
            if not list(target.glob(f"pooled_{depth}_v*.npy")):
                continue
            pooled, labels, folds, views = load_pooled(args.out, variant, int(size), depth)
            for augmented in (False, True) if views and args.augmented else (False,):
                row = {"kind": "probe" + ("+aug" if augmented else ""), "variant": variant, "size": int(size),
                       "depth": depth, "blocks": depth_blocks(variant, depth), "channels": int(pooled.shape[-1]),
                       "views": views, **probe_row(pooled, labels, folds, classes, augmented)}
                append(args.out, row)


# ---------------------------------------------------------------------------------------------------------------
# Temporal heads on cached features


RECIPES = {
    # today's LRCN head (models.lrcn_imagenet after the encoder; train.py's schedule and optimiser)
    "shipped": {},
    "no-motion": {"motion": False},
    "meanstd-pool": {"pool": "meanstd"},  # mean and std of the LSTM outputs over time instead of the mean alone
    "last": {"pool": "last"},  # the LSTM's last state
    "ln": {"norm": "layer"},  # LayerNorm on the inputs instead of BatchNorm
    "h32": {"hidden": 32},
    "h16": {"hidden": 16},
    "drop0.7": {"drop_in": 0.7},
    "drop0.2": {"drop_in": 0.2},
    "drop0": {"drop_in": 0.0},
    "ls0.1": {"smoothing": 0.1},
    "wd0.5": {"weight_decay": 0.5},
    "lr3e-4": {"lr": 3e-4},
    "lr3e-3": {"lr": 3e-3},
    "no-aug": {"augment": False},
    "e80": {"epochs": 80, "stop_from": 40},
    "bidir": {"bidirectional": True},
    # the clip's [mean, variance over time] of the (normalised) frame features beside the LSTM's clip vector
    "skip": {"skip": True},
    # no LSTM at all: a linear softmax on [mean, variance over time] (the probe, trained like the heads)
    "linear": {"skip": True, "lstm": False},
    "short": {"epochs": 20, "stop_from": 10, "patience": 5},
    # no early stopping: the whole 40-epoch schedule, so the last epoch's accuracy is chosen by nothing the
    # validation fold said (as a refit model's is not)
    "fixed": {"stop_from": 10_000},  # the budget's schedule for the costly ConvLSTM rows
    "reduce64": {"reduce": 64},  # ConvLSTM: a 1x1 convolution to 64 channels per frame before the recurrence
}
BASE = {"motion": True, "pool": "mean", "norm": "batch", "hidden": 64, "drop_in": 0.5, "drop_out": 0.3,
        "smoothing": 0.0, "weight_decay": 0.05, "lr": 1e-3, "augment": True, "epochs": 40, "stop_from": 20,
        "patience": 10, "batch": 16, "warmup": 2, "bidirectional": False, "skip": False, "lstm": True,
        # ConvLSTM head (models.convlstm_imagenet after the encoder)
        "filters": 64, "reduce": 0}


def recipe_of(names: str) -> dict:
    """``a+b+...`` of RECIPES over BASE."""
    out = dict(BASE)
    for name in names.split("+"):
        if name not in RECIPES:
            raise SystemExit(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
        out.update(RECIPES[name])
    return out


def lr_at(epoch: int, r: dict) -> float:
    """train.py's schedule: linear warm-up, cosine decay to 5 % of the peak over the epochs."""
    if epoch < r["warmup"]:
        return r["lr"] * (epoch + 1) / (r["warmup"] + 1)
    progress = (epoch - r["warmup"]) / max(r["epochs"] - r["warmup"], 1)
    return r["lr"] * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def lstm_head_model(shape: tuple[int, ...], classes: int, r: dict, name: str = "lrcn_head"):
    """(frames, C) float features -> probabilities: models.lrcn_imagenet's part after the pooled encoder, with the
    recipe's changes."""
    import keras
    from keras import layers

    from har.models import builders as models

    inputs = keras.Input(shape, name="features")
    x = inputs
    if r["motion"]:
        later = layers.Cropping1D((1, 0), name="later")(x)
        earlier = layers.Cropping1D((0, 1), name="earlier")(x)
        x = layers.Concatenate(name="features_motion")([later, layers.Subtract(name="motion")([later, earlier])])
    if r["norm"] == "layer":
        x = layers.LayerNormalization(name="ln_features")(x)
    else:
        x = layers.BatchNormalization(momentum=models.BN_MOMENTUM, name="bn_features")(x)
    x = layers.Dropout(r["drop_in"], name="drop_frames")(x)
    parts = []
    if r["skip"]:  # (batch, 2C): mean and variance over time of the normalised features, batch-normalised
        parts.append(layers.BatchNormalization(momentum=models.BN_MOMENTUM, name="bn_moments")(
            _mean_var(x, "in")))
    if r["lstm"]:
        lstm = layers.LSTM(r["hidden"], return_sequences=r["pool"] != "last", name="lstm")
        h = layers.Bidirectional(lstm, name="bilstm")(x) if r["bidirectional"] else lstm(x)
        if r["pool"] == "mean":
            h = layers.GlobalAveragePooling1D(name="time_pool")(h)
        elif r["pool"] == "meanstd":
            h = _mean_var(h, "lstm")
        parts.append(h)
    x = parts[0] if len(parts) == 1 else layers.Concatenate(name="clip")(parts)
    x = layers.Dropout(r["drop_out"], name="drop_clip")(x)
    outputs = layers.Dense(classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


def _mean_var(x, name: str):
    """(batch, steps, C) -> (batch, 2C): mean and variance over the steps (built-in layers only)."""
    from keras import layers

    mean = layers.GlobalAveragePooling1D(name=f"{name}_mean")(x)
    sq = layers.GlobalAveragePooling1D(name=f"{name}_mean_sq")(layers.Multiply(name=f"{name}_sq")([x, x]))
    var = layers.Subtract(name=f"{name}_var")([sq, layers.Multiply(name=f"{name}_sq_mean")([mean, mean])])
    return layers.Concatenate(name=f"{name}_mean_var")([mean, var])


def convlstm_head_model(shape: tuple[int, ...], classes: int, r: dict, name: str = "convlstm_head"):
    """(frames, h, w, C) feature maps -> probabilities: models.convlstm_imagenet's part after the encoder
    (``reduce``: a 1x1 convolution to that many channels per frame first, for 1280-channel maps)."""
    import keras
    from keras import layers

    from har.models import builders as models

    inputs = keras.Input(shape, name="maps")
    x = layers.BatchNormalization(momentum=models.BN_MOMENTUM, name="bn_features")(inputs)
    if r["reduce"]:
        x = layers.TimeDistributed(layers.Conv2D(r["reduce"], 1, use_bias=False), name="reduce")(x)
    x = layers.Dropout(r["drop_out"], name="drop_maps")(x)
    x = layers.ConvLSTM2D(r["filters"], 3, padding="same", return_sequences=False, name="convlstm0")(x)
    x = layers.BatchNormalization(momentum=models.BN_MOMENTUM, name="bn0")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(r["drop_out"], name="drop")(x)
    outputs = layers.Dense(classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


def fit_fold(build, x: np.ndarray, labels: np.ndarray, train: np.ndarray, val: np.ndarray, r: dict, seed: int):
    """Train a fresh head on ``x[train]`` (a random augmented view per clip and epoch), validate on view 0 of
    ``x[val]``; returns (probabilities at the best validation loss and at the last epoch, best loss, best epoch,
    epochs run, seconds, parameters). The best epoch is picked on the fold itself, as ``tools/cross_validate.py``
    does: optimistic for a head against the probe, which picks nothing; the last epoch's figures are not."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build()
    classes = model.output.shape[-1]
    model.compile(optimizer=keras.optimizers.AdamW(r["lr"], weight_decay=r["weight_decay"]),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=r["smoothing"]))
    rng = np.random.default_rng(seed)
    y_tr = keras.utils.to_categorical(labels[train], classes)
    x_val = x[val, 0].astype(np.float32)
    y_val = labels[val]
    views = x.shape[1]
    best, best_epoch, stale = math.inf, 0, 0
    started = time.perf_counter()
    for epoch in range(r["epochs"]):
        model.optimizer.learning_rate.assign(lr_at(epoch, r))
        pick = rng.integers(1, views, len(train)) if r["augment"] and views > 1 else np.zeros(len(train), int)
        x_tr = x[train, pick].astype(np.float32)
        model.fit(x_tr, y_tr, batch_size=r["batch"], epochs=1, shuffle=True, verbose=0)
        p = model.predict(x_val, batch_size=64, verbose=0)
        loss = float(-np.mean(np.log(np.maximum(p[np.arange(len(y_val)), y_val], 1e-7))))
        if loss < best:
            best, best_epoch, best_p, stale = loss, epoch + 1, p, 0
        elif epoch + 1 > r["stop_from"]:
            stale += 1
            if stale >= r["patience"]:
                break
    return best_p, p, best, best_epoch, epoch + 1, time.perf_counter() - started, model.count_params()


def head(args) -> None:
    from har.data.dataset import index_dataset

    classes = index_dataset(args.data).classes
    r = recipe_of(args.recipe)
    target = feature_dir(args.out, args.variant, args.size)
    if args.arch == "lrcn":
        x, labels, folds, views = load_pooled(args.out, args.variant, args.size, args.depth, args.views)
        build = lambda: lstm_head_model(x.shape[2:], len(classes), r)  # noqa: E731
    else:
        views = args.views or max(int(p.stem.split("_v")[-1]) for p in target.glob(f"maps_{args.depth}_v*.npy"))
        x = np.load(target / f"maps_{args.depth}_v{views}.npy", mmap_mode="r")
        x = np.ascontiguousarray(x)  # (clips, views, frames, h, w, C) float16 in memory
        labels, folds = np.load(target / "labels.npy"), np.load(target / "folds.npy")
        build = lambda: convlstm_head_model(x.shape[2:], len(classes), r)  # noqa: E731
    pred = np.zeros(len(labels), np.int64)
    pred_last = np.zeros(len(labels), np.int64)
    per_fold = []
    for f in range(FOLDS):
        train, val = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        p, p_last, best, epoch, epochs, seconds, params = fit_fold(build, x, labels, train, val, r, args.seed)
        pred[val] = p.argmax(1)
        pred_last[val] = p_last.argmax(1)
        per_fold.append({"best_val_loss": round(best, 4), "best_epoch": epoch, "epochs": epochs,
                         "seconds": round(seconds, 1),
                         "accuracy": round(float(np.mean(p.argmax(1) == labels[val])), 4)})
        log.info("%s %s %s %d %s fold %d: %s", args.arch, args.recipe, args.variant, args.size, args.depth, f,
                 per_fold[-1])
    row = {"kind": args.arch, "recipe": args.recipe, "variant": args.variant, "size": args.size, "depth": args.depth,
           "blocks": depth_blocks(args.variant, args.depth), "channels": int(x.shape[-1]), "views": views,
           "seed": args.seed, "head_params": params, **scores(labels, pred, classes),
           "last_accuracy": float(np.mean(pred_last == labels)),
           "mean_val_loss": float(np.mean([f["best_val_loss"] for f in per_fold])), "folds": per_fold,
           "head_seconds": round(sum(f["seconds"] for f in per_fold), 1)}
    append(args.out, row)


# ---------------------------------------------------------------------------------------------------------------
# Whole-model forward time and size


def whole_model(arch: str, variant: str, size: int, depth: str, classes: int, r: dict, weights: Path):
    """uint8 (1, frames, size, size, 3) -> probabilities: the frozen encoder (TimeDistributed) and the head, as the
    imagenet presets build them (the LRCN pools each frame's map; the ConvLSTM reads the maps)."""
    import keras
    from keras import layers

    from har.models import backbone
    from har.models import builders as models

    inputs, x = models._input(FRAMES, size, backbone.SCALE, backbone.OFFSET)
    enc = backbone.pretrained_encoder(depth_blocks(variant, depth), size, variant=variant,
                                      head_conv=depth == "head", path=weights)
    x = layers.TimeDistributed(enc, name="encoder")(x)
    if arch == "lrcn":
        x = layers.TimeDistributed(layers.GlobalAveragePooling2D(), name="gap")(x)
        head_net = lstm_head_model(tuple(x.shape[1:]), classes, r)
    else:
        head_net = convlstm_head_model(tuple(x.shape[1:]), classes, r)
    return keras.Model(inputs, head_net(x), name=arch)


def bench(args) -> None:
    import tensorflow as tf

    from har.serve.surgery import fold_time

    r = recipe_of(args.recipe)
    if args.reduce:
        r["reduce"] = args.reduce
    weights = args.weights or args.out.parent / "weights" / f"{args.variant}_imagenet.npz"
    net = whole_model(args.arch, args.variant, args.size, args.depth, 6, r, weights)
    work = args.out / "bench" / f"{args.arch}_{args.variant}_{args.size}_{args.depth}"
    work.mkdir(parents=True, exist_ok=True)
    net.save(work / "model.keras")
    keras_bytes = (work / "model.keras").stat().st_size
    fold_time(net)
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (1, FRAMES, args.size, args.size, 3), dtype=np.uint8)
    call = tf.function(lambda x: net(x, training=False))
    tf_ms = timed(lambda: call(clip).numpy(), args.runs)
    row = {"kind": "bench", "arch": args.arch, "variant": args.variant, "size": args.size, "depth": args.depth,
           "recipe": args.recipe + (f"+reduce{args.reduce}" if args.reduce else ""),
           "params": int(net.count_params()), "keras_bytes": keras_bytes,
           "tf_ms_p50": round(float(np.median(tf_ms)), 2), "tf_ms_p90": round(float(np.percentile(tf_ms, 90)), 2),
           "tf_ms_min": round(float(np.min(tf_ms)), 2),
           "load_avg_1min": round(os.getloadavg()[0], 2)}  # other engineers' jobs share the 2 cores
    if args.no_onnx:
        row["dir_mb"] = round(2 * keras_bytes / 1e6, 1)  # estimate: the ONNX copy holds the same float32 weights
        append(args.out, row)
        return
    try:
        import onnxruntime as ort

        for layer in net.layers:
            if type(layer).__name__.startswith("ConvLSTM"):
                layer.unroll = True
        net.export(str(work / "model.onnx"), format="onnx", verbose=False)
        session = ort.InferenceSession(str(work / "model.onnx"), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        got = session.run(None, {name: clip})[0]
        ort_ms = timed(lambda: session.run(None, {name: clip}), args.runs)
        row.update({"onnx_bytes": (work / "model.onnx").stat().st_size,
                    "onnx_ms_p50": round(float(np.median(ort_ms)), 2), "onnx_ms_min": round(float(np.min(ort_ms)), 2),
                    "onnx_max_diff": float(np.abs(got - call(clip).numpy()).max())})
    except Exception as exc:  # the row keeps its TensorFlow figures; the reason is logged
        log.warning("no ONNX figures for %s: %s", work.name, exc)
    row["dir_mb"] = round((row["keras_bytes"] + row.get("onnx_bytes", row["keras_bytes"])) / 1e6, 1)
    append(args.out, row)


def pair(args) -> None:
    """Forward time of ``--variant/--size/--depth`` against today's model of ``--arch`` (lite0, s3, 64 px) in one
    process, calls alternated, so that the other engineers' jobs on the shared cores slow both alike: the ratio of
    the p50s holds where the absolute times do not. ``models/<arch>/benchmark.json`` (today's model measured on a
    quiet machine) times the ratio estimates the row's quiet time."""
    import tensorflow as tf

    from har.serve.surgery import fold_time

    r = recipe_of(args.recipe)
    weights = args.weights or args.out.parent / "weights" / f"{args.variant}_imagenet.npz"
    calls, clips = {}, {}
    for name, (variant, size, depth) in {"row": (args.variant, args.size, args.depth),
                                         "today": ("lite0", 64, "s3")}.items():
        net = whole_model(args.arch, variant, size, depth, 6, r,
                          weights if name == "row" else args.out.parent / "weights" / "lite0_imagenet.npz")
        fold_time(net)
        calls[name] = tf.function(lambda x, net=net: net(x, training=False))
        clips[name] = np.random.default_rng(0).integers(0, 256, (1, FRAMES, size, size, 3), dtype=np.uint8)
        for _ in range(5):
            calls[name](clips[name]).numpy()
    times = {name: [] for name in calls}
    for _ in range(args.runs):
        for name in calls:
            t = time.perf_counter()
            calls[name](clips[name]).numpy()
            times[name].append(1000 * (time.perf_counter() - t))
    quiet = json.loads((ROOT / "models" / args.arch / "benchmark.json").read_text())  # today's model of the arch
    p50 = {k: float(np.median(v)) for k, v in times.items()}
    ratio = p50["row"] / p50["today"]
    append(args.out, {"kind": "pair", "arch": args.arch, "variant": args.variant, "size": args.size,
                      "depth": args.depth, "recipe": args.recipe, "runs": args.runs,
                      "row_ms_p50": round(p50["row"], 2), "today_ms_p50": round(p50["today"], 2),
                      "ratio": round(ratio, 2), "today_quiet_tf_ms": quiet["forward_ms"],
                      "estimated_quiet_tf_ms": round(ratio * quiet["forward_ms"], 1),
                      "load_avg_1min": round(os.getloadavg()[0], 2)})


def timed(fn, runs: int) -> list[float]:
    for _ in range(5):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t))
    return out


# ---------------------------------------------------------------------------------------------------------------


def append(out: Path, row: dict) -> None:
    row["measured"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    brief = {k: row[k] for k in ("kind", "recipe", "variant", "size", "depth", "accuracy", "mean_val_loss",
                                 "violin_recall", "piano_recall", "last_accuracy", "tf_ms_p50", "onnx_ms_p50",
                                 "dir_mb", "ratio", "estimated_quiet_tf_ms") if k in row}
    log.info("row %s", brief)


def table(args) -> None:
    rows = [json.loads(line) for line in open(args.out / "results.jsonl")]
    key = lambda r: (r["variant"], r["size"], r["depth"])  # noqa: E731
    latest: dict = {}
    for r in rows:  # the latest run of each (kind, recipe, row, seed)
        latest[(r["kind"], r.get("recipe", ""), r.get("arch", ""), *key(r), r.get("seed", 0))] = r
    print("| kind | recipe | seed | encoder | depth | size | pooled CV acc | mean best val loss | violin | piano "
          "| views |")
    print("|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for _, r in sorted(latest.items(), key=lambda kv: (kv[0][3], kv[0][5], kv[0][4], kv[0][0], kv[0][1])):
        if r["kind"] in ("bench", "pair"):
            continue
        print(f"| {r['kind']} | {r.get('recipe', '')} | {r.get('seed', '')} | {r['variant']} | "
              f"{r['depth']} ({r['blocks']}) | {r['size']} | "
              f"{100 * r['accuracy']:.1f} % ({r['right']}/{r['clips']}) | {r['mean_val_loss']:.3f} | "
              f"{100 * r['violin_recall']:.0f} % | {100 * r['piano_recall']:.0f} % | {r['views']} |")
    print()
    print("| arch | encoder | depth | size | params | TF p50 ms | ONNX p50 ms | dir MB |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for _, r in sorted(latest.items(), key=lambda kv: (kv[0][2], kv[0][3], kv[0][5], kv[0][4])):
        if r["kind"] != "bench":
            continue
        print(f"| {r['arch']} | {r['variant']} | {r['depth']} | {r['size']} | {r['params']:,} | {r['tf_ms_p50']} | "
              f"{r.get('onnx_ms_p50', '-')} | {r['dir_mb']} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=("features", "probe", "head", "bench", "pair", "table"))
    p.add_argument("--variant", choices=("lite0", "lite1", "lite2"))
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--depth", choices=DEPTHS, default="s3")
    p.add_argument("--views", type=int, default=None, help="augmented views (features: default 4)")
    p.add_argument("--maps", nargs="*", default=[], choices=DEPTHS, help="features: also keep these depths' maps")
    p.add_argument("--arch", choices=("lrcn", "convlstm"), default="lrcn")
    p.add_argument("--recipe", default="shipped", help="head: RECIPES names joined by +")
    p.add_argument("--reduce", type=int, default=0, help="bench: the ConvLSTM head's 1x1 reduction")
    p.add_argument("--augmented", action="store_true", help="probe: also fit on the augmented views")
    p.add_argument("--no-onnx", action="store_true", help="bench: TensorFlow only (model dir estimated as 2x .keras)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--weights", type=Path, default=None,
                   help="converted archive (default scratch/weights/V_imagenet.npz)")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ucf101-6")
    p.add_argument("--out", type=Path, default=ROOT / "scratch" / "ablation")
    p.add_argument("--cache-dir", type=Path, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.command == "features":
        args.views = 4 if args.views is None else args.views
    {"features": features, "probe": probe, "head": head, "bench": bench, "pair": pair, "table": table}[args.command](
        args)


if __name__ == "__main__":
    main()
