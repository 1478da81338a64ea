"""har.models.backbone beyond today's encoder (issue 16): any Lite variant, any depth, any size, from the right archive,
while the 8- and 11-block Lite0 encoders of the models shipped before stay exactly what they were."""

from __future__ import annotations

import numpy as np
import pytest
from test_backbone import archive_keys_used

from har.models import backbone


def test_the_shipped_encoders_still_read_the_original_archive():
    assert backbone.weights_path("lite0", 8) == backbone.WEIGHTS
    assert backbone.weights_path("lite0", 11) == backbone.WEIGHTS
    assert backbone.weights_path("lite0", 16) == backbone.WEIGHTS_ALL
    enc = backbone.pretrained_encoder(8, 64)
    with np.load(backbone.WEIGHTS) as f:
        np.testing.assert_array_equal(enc.get_layer("b7_project").get_weights()[0], f["_blocks.7._project_conv.weight"])


def test_the_whole_lite0_loads_every_layer_from_its_archive_and_nothing_is_left_over():
    enc = backbone.pretrained_encoder(16, 128)
    assert enc.output.shape[1:] == (4, 4, 320)
    with np.load(backbone.WEIGHTS_ALL) as f:
        keys = set(f.files)
        used = archive_keys_used(enc, f)
    assert used == keys  # stem and blocks 0-15: 240 arrays
    assert not enc.trainable_weights


@pytest.mark.parametrize(("variant", "blocks", "channels"),
                         [("lite0", 16, 320), ("lite1", 21, 320), ("lite2", 21, 352)])
def test_each_variant_has_the_checkpoints_stages(variant, blocks, channels):
    assert backbone.num_blocks(variant) == blocks
    enc = backbone.encoder(blocks, 96, variant=variant)
    assert enc.output.shape[1:] == (3, 3, channels)
    head = backbone.encoder(blocks, 96, variant=variant, head_conv=True)
    assert head.output.shape[1:] == (3, 3, backbone.HEAD_CHANNELS)


def test_an_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="lite3.*lite0, lite1, lite2"):
        backbone.encoder(4, 64, variant="lite3")
