"""har.models.builders: the tutorial presets reproduce the original networks; every model takes uint8 and reloads
safely."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from har.models import builders as models


def test_tutorial_presets_match_the_original_parameter_counts():
    assert models.build("lrcn", "tutorial", 4).count_params() == 73_060
    assert models.build("convlstm", "tutorial", 4).count_params() == 44_524


@pytest.mark.parametrize("arch", models.ARCHS)
@pytest.mark.parametrize("preset", models.PRESETS)
def test_uint8_in_probabilities_out_and_safe_reload(tmp_path, arch, preset):
    model = models.build(arch, preset, 6)
    assert model.input.dtype == "uint8" and tuple(model.input.shape) == (None, 20, 64, 64, 3)
    x = np.random.default_rng(0).integers(0, 256, (2, 20, 64, 64, 3), dtype=np.uint8)
    p = np.asarray(model(x, training=False))
    assert p.shape == (2, 6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_allclose(np.asarray(again(x, training=False)), p, rtol=1e-6, atol=1e-6)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in again.layers)


@pytest.mark.parametrize("arch", models.ARCHS)
def test_group_norm_variant_reloads_safely_and_has_no_running_statistics(tmp_path, arch):
    model = models.build(arch, "default", 6, norm="group")
    assert not any("moving" in w.path for w in model.weights)
    inner = [getattr(layer, "layer", layer) for layer in model.layers]  # TimeDistributed wraps the LRCN's
    assert sum(isinstance(layer, keras.layers.GroupNormalization) for layer in inner) >= 3
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in inner)
    x = np.random.default_rng(1).integers(0, 256, (2, 20, 64, 64, 3), dtype=np.uint8)
    p = np.asarray(model(x, training=False))
    model.save(tmp_path / "g.keras")
    again = keras.saving.load_model(tmp_path / "g.keras", safe_mode=True, compile=False)
    np.testing.assert_allclose(np.asarray(again(x, training=False)), p, rtol=1e-6, atol=1e-6)
    # no running statistics: the training-mode forward pass normalises exactly as serving does (dropout aside)
    drop_free = keras.Model(model.input, model.output)
    for layer in drop_free.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    np.testing.assert_allclose(np.asarray(drop_free(x, training=True)), p, rtol=1e-5, atol=1e-5)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown architecture 'c3d'"):
        models.build("c3d", "default", 6)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        models.build("lrcn", "huge", 6)
    with pytest.raises(ValueError, match="unknown normalisation 'layer'"):
        models.build("lrcn", "default", 6, norm="layer")
