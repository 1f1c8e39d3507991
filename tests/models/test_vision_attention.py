"""The shared vision encoder with each attention of S01: global, Swin's shifted
windows, PVT's spatial reduction (minivl/models/vision.py)."""

import numpy as np
import pytest

import minivl as mv
from minivl.models.clip import CLIP
from minivl.models.vision import VisionEncoder
from minivl.models.vit import ViT
from minivl.nn.pvt import PVTTransformer
from minivl.nn.swin import SwinTransformer
from minivl.testing import gradcheck


@pytest.mark.parametrize("attention, stages, tokens", [("global", 1, 1 + 16), ("swin", 1, 1 + 16),
                                                       ("swin", 2, 1 + 4), ("pvt", 1, 1 + 16)])
def test_every_attention_gives_tokens_of_the_encoder_width_and_trains_every_parameter(attention, stages, tokens):
    mv.manual_seed(0)
    enc = VisionEncoder(image_size=8, patch_size=2, in_channels=3, dim=8, depth=2, num_heads=2,
                        attention=attention, window_size=2, swin_stages=stages, sr_ratio=2)
    out = enc(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
    assert out.shape == (2, tokens, 8)
    (out * out).sum().backward()
    missing = [name for name, p in enc.named_parameters() if p.grad is None or not np.any(p.grad)]
    assert missing == []
    kind = {"global": "Transformer", "swin": "SwinTransformer", "pvt": "PVTTransformer"}[attention]
    assert type(enc.transformer).__name__ == kind


def test_swin_token_zero_is_the_average_pool_of_the_patch_tokens():
    mv.manual_seed(0)
    swin = SwinTransformer(4, grid=4, depth=2, num_heads=1, window_size=2)
    out = swin(mv.tensor(np.random.default_rng(1).standard_normal((2, 16, 4)))).data
    np.testing.assert_allclose(out[:, 0], out[:, 1:].mean(1), atol=1e-12)


def test_swin_encoder_gradient_to_the_pixels():
    mv.manual_seed(0)
    enc = VisionEncoder(image_size=8, patch_size=2, in_channels=1, dim=4, depth=2, num_heads=1,
                        attention="swin", window_size=2, swin_stages=2)
    for p in enc.parameters():
        p.data = p.data.astype(np.float64)
    x = mv.tensor(np.random.default_rng(2).standard_normal((1, 1, 8, 8)), requires_grad=True)
    gradcheck(enc, x)


def test_models_pass_the_attention_through():
    assert isinstance(ViT(image_size=16, patch_size=4, attention="pvt").encoder.transformer, PVTTransformer)
    assert isinstance(CLIP(vision_attention="swin").vision_model.transformer, SwinTransformer)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match=r"attention must be one of \('global', 'swin', 'pvt'\), got 'local'"):
        VisionEncoder(attention="local")
    with pytest.raises(ValueError, match="not divisible by sr_ratio 3"):
        VisionEncoder(image_size=16, patch_size=4, attention="pvt", sr_ratio=3)
    with pytest.raises(ValueError, match="depth 3 does not split into 2 stages"):
        VisionEncoder(image_size=16, patch_size=2, depth=3, attention="swin", swin_stages=2)
