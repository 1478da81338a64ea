"""``har.teach``: a model that knows the base model's actions and new ones, taught from a few example clips.

    from har import teach
    rec = teach("lrcn", {"Juggling": ["j1.mp4", "j2.mp4", "j3.mp4"]}, "models/lrcn-juggling")
    rec.classify("new.mp4").label      # one of the six, "Juggling", or "none of the known actions"

Steps: the examples are checked (:mod:`har.teaching.examples`), each clip's views go through the base model's served
per-frame half and its head up to the embedding (:mod:`har.teaching.embedding`), a softmax layer over the base
classes and the new ones is fitted on those and the base's stored training views (:mod:`har.teaching.basedata`,
:mod:`har.teaching.classifier`), and the taught directory is written (:mod:`har.teaching.taught`).
The frozen encoder and the temporal model are the base's, unchanged: only the last layer is new.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from har.errors import HarError
from har.progress import Progress, scaled, silent

log = logging.getLogger(__name__)


def teach(base, examples: Mapping[str, Sequence], out: str | os.PathLike | None = None, *,
          progress: Progress | None = None, runtime: str = "auto"):
    """Teach ``base`` (a shipped name, a model directory or a loaded :class:`har.Recognizer`) the actions of
    ``examples`` (name -> clips: files, links or ``(file-or-link, start_s, end_s)``); write the taught model
    directory ``out`` (default: a new temporary folder) and return a :class:`har.Recognizer` serving it (its
    ``directory``). Raises :class:`HarError` naming the example or name at fault; nothing is written then."""
    from har.modeldir import load_model
    from har.serve.export import keras_digest
    from har.serve.recognizer import Recognizer
    from har.serve.runtime import load_tensorflow
    from har.teaching.basedata import TeachData
    from har.teaching.classifier import BASE_L2, DESCRIPTOR_WEIGHT, L2, NEW_OFFSET, fit
    from har.teaching.embedding import PROBS, embed, embedder
    from har.teaching.examples import VIEWS, clip_views, collect, file_digest, local
    from har.teaching.taught import METHOD, taught_network, widened_familiarity, write

    progress = progress or silent
    t0 = time.perf_counter()
    progress(0.0, "loading the base model")
    rec = base if isinstance(base, Recognizer) else Recognizer(base, runtime=runtime)
    if rec.directory is None:
        raise HarError("Only a recognizer loaded from a model directory can be taught.")
    base_dir = Path(rec.directory)
    config = rec.config
    wanted = collect(examples, config.classes)  # names checked before any work
    digest = keras_digest(base_dir)
    data = TeachData.load(base_dir, digest)
    load_tensorflow()
    network, _ = load_model(base_dir)
    embed_model = embedder(network, config.size)
    new = list(dict.fromkeys(e.label for e in wanted))
    classes = (*config.classes, *new)
    embs, descs, labels, records, seen = [], [], [], [], {}
    for i, example in enumerate(wanted):
        share = scaled(progress, 0.05 + 0.8 * i / len(wanted), 0.05 + 0.8 * (i + 1) / len(wanted))
        share(0.0, f"example {i + 1} of {len(wanted)}: {example.name} ({example.label})")
        with local(example, share) as path:
            if not Path(path).is_file():
                raise HarError(f"Example '{example.name}' of '{example.label}' cannot be used: it does not exist.")
            sha = file_digest(Path(path))
            if sha in seen and seen[sha].label != example.label:
                raise HarError(f"Example '{example.name}' is the same clip as '{seen[sha].name}': one clip cannot "
                               f"show both '{seen[sha].label}' and '{example.label}'.")
            if sha in seen:
                log.info("%s is given twice for %s: used once", example.name, example.label)
                continue
            seen[sha] = example
            views = clip_views(Path(path), example, config.frames, config.size, config.min_window_s,
                                  int(sha[:8], 16))
        features = rec.frame_features(views.reshape(-1, *views.shape[2:]))
        e, d = embed(embed_model, features.reshape(len(views), config.frames, *features.shape[1:]))
        embs.append(e)
        descs.append(d)
        labels.append(classes.index(example.label))
        records.append({"name": example.name, "action": example.label, "sha256": sha,
                        **({"link": example.source, "start_s": example.start_s, "end_s": example.end_s}
                           if example.link else {})})
    progress(0.87, f"fitting {len(classes)} classes")
    x_base, y_base = data.inputs()
    x_new = np.concatenate([np.stack(embs), np.stack(descs)], axis=2).reshape(-1, x_base.shape[1])
    y_new = np.repeat(np.array(labels), VIEWS)
    last = network.get_layer(PROBS)
    base_kernel, base_bias = last.get_weights()  # a taught base's reads [embedding, descriptor]: kept whole
    layer = fit(np.concatenate([x_base, x_new]), np.concatenate([y_base, y_new]), len(classes), base_kernel,
                base_bias, x_base, embs[0].shape[1])
    progress(0.92, "writing the taught model")
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="har-taught-"))
    name = out.name
    taught = {"base": config.taught.get("base", base_dir.name) if config.taught else base_dir.name,
              "base_dir": str(base_dir), "base_sha256": digest, "base_classes": list(config.classes),
              "classes": new, "classes_all": list(classes), "examples": records, "method": METHOD,
              "views_per_example": VIEWS, "base_views": int(len(x_base)),
              "fit": {"iterations": layer.iterations, "loss": round(layer.loss, 5), "l2": L2, "base_l2": BASE_L2,
                      "descriptor_weight": DESCRIPTOR_WEIGHT, "new_offset": NEW_OFFSET},
              "seconds": round(time.perf_counter() - t0, 2)}
    fam = rec.familiarity
    if fam is None and (base_dir / "openset.npz").is_file():
        from har.openset.score import Familiarity

        fam = Familiarity.load(base_dir)
    widened = widened_familiarity(fam, np.concatenate(descs), np.repeat(np.array(labels), VIEWS), len(config.classes),
                                  len(records)) if fam is not None else None
    write(out, base_dir, taught_network(network, layer, name), config, taught, widened)
    data.with_examples(np.stack(embs), np.stack(descs), np.array(labels), classes,
                       tuple(r["name"] for r in records),
                       {**data.info, "model_digest": keras_digest(out), "taught": len(records)}).save(out)
    progress(0.96, "loading the taught model")
    taught_rec = Recognizer(out, runtime="keras" if rec.runtime == "keras" else "auto")
    log.info("taught %s: %s from %d examples in %.1f s", name, ", ".join(new), len(records), time.perf_counter() - t0)
    progress(1.0, f"taught {', '.join(new)}")
    return taught_rec
