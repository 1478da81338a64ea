"""har.models: the tutorial presets reproduce the original networks; every model takes uint8 and reloads safely."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from har import models


def test_tutorial_presets_match_the_original_parameter_counts():
    assert models.build("lrcn", "tutorial", 4).count_params() == 73_060
    assert models.build("convlstm", "tutorial", 4).count_params() == 44_524


@pytest.mark.parametrize("arch", models.ARCHS)
@pytest.mark.parametrize("preset", models.PRESETS)
def test_uint8_in_probabilities_out_and_safe_reload(tmp_path, arch, preset):
    model = models.build(arch, preset, 6)
    assert model.input.dtype == "uint8" and tuple(model.input.shape) == (None, 20, 64, 64, 3)
    x = np.random.default_rng(0).integers(0, 256, (2, 20, 64, 64, 3), dtype=np.uint8)
    p = np.asarray(model.predict_on_batch(x))
    assert p.shape == (2, 6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_allclose(np.asarray(again.predict_on_batch(x)), p, rtol=1e-6, atol=1e-6)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in again.layers)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown architecture 'c3d'"):
        models.build("c3d", "default", 6)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        models.build("lrcn", "huge", 6)
