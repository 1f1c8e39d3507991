"""Swin against Hugging Face's implementation (transformers ``SwinLayer`` and
``SwinPatchMerging``), weights copied across, float64: a trusted second reading
of the paper. Skipped when torch / transformers are not installed."""

import numpy as np
import pytest

import minivl as mv
from minivl.nn.swin import PatchMerging, SwinBlock

torch = pytest.importorskip("torch")
modeling_swin = pytest.importorskip("transformers.models.swin.modeling_swin")
SwinConfig = pytest.importorskip("transformers").SwinConfig

pytestmark = pytest.mark.oracle


def _copy(module_param, tensor):
    module_param.data = tensor.detach().double().numpy().copy()


@pytest.mark.parametrize("resolution, window, shift", [((4, 4), 2, 1), ((6, 6), 3, 1), ((8, 8), 4, 2), ((4, 4), 2, 0)])
def test_swin_block_matches_hugging_face_swin_layer(resolution, window, shift):
    torch.manual_seed(0)
    C, heads = 8, 2
    config = SwinConfig(window_size=window, hidden_act="gelu", mlp_ratio=2.0, layer_norm_eps=1e-5,
                        attn_implementation="eager")
    hf = modeling_swin.SwinLayer(config, dim=C, input_resolution=resolution, num_heads=heads, shift_size=shift)
    hf = hf.double().eval()
    with torch.no_grad():  # random, not the zero initial table, so the bias matters
        hf.attention.relative_position_bias.relative_position_bias_table.normal_()
    mv.manual_seed(0)
    ours = SwinBlock(C, resolution, heads, window_size=window, shift=shift, mlp_ratio=2.0)
    sd = hf.state_dict()
    _copy(ours.ln_1.weight, sd["layernorm_before.weight"])
    _copy(ours.ln_1.bias, sd["layernorm_before.bias"])
    _copy(ours.ln_2.weight, sd["layernorm_after.weight"])
    _copy(ours.ln_2.bias, sd["layernorm_after.bias"])
    ours.attn.qkv.weight.data = torch.cat([sd[f"attention.{n}_proj.weight"] for n in "qkv"]).double().numpy()
    ours.attn.qkv.bias.data = torch.cat([sd[f"attention.{n}_proj.bias"] for n in "qkv"]).double().numpy()
    _copy(ours.attn.proj.weight, sd["attention.o_proj.weight"])
    _copy(ours.attn.proj.bias, sd["attention.o_proj.bias"])
    _copy(ours.attn.relative_position_bias.table, sd["attention.relative_position_bias.relative_position_bias_table"])
    for name in ("fc1", "fc2"):
        _copy(getattr(ours.mlp, name).weight, sd[f"mlp.{name}.weight"])
        _copy(getattr(ours.mlp, name).bias, sd[f"mlp.{name}.bias"])
    H, W = resolution
    x = np.random.default_rng(1).standard_normal((2, H, W, C))
    with torch.no_grad():
        out = hf(torch.from_numpy(x.reshape(2, H * W, C)), (H, W))
    expected = (out[0] if isinstance(out, tuple) else out).numpy().reshape(2, H, W, C)
    # HF takes the softmax in float32 even for float64 inputs (about 5e-8 off here), and fills
    # forbidden scores with -100 rather than -inf (e^-100 does not register)
    np.testing.assert_allclose(ours(mv.tensor(x)).data, expected, atol=1e-6)


def test_patch_merging_matches_hugging_face():
    torch.manual_seed(0)
    hf = modeling_swin.SwinPatchMerging(3).double()
    ours = PatchMerging(3)
    sd = hf.state_dict()
    _copy(ours.norm.weight, sd["norm.weight"])
    _copy(ours.norm.bias, sd["norm.bias"])
    _copy(ours.reduction.weight, sd["reduction.weight"])
    x = np.random.default_rng(2).standard_normal((2, 4, 6, 3))
    with torch.no_grad():
        expected = hf(torch.from_numpy(x.reshape(2, 24, 3)), (4, 6)).numpy().reshape(2, 2, 3, 6)
    np.testing.assert_allclose(ours(mv.tensor(x)).data, expected, atol=1e-12)
