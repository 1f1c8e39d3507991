"""The checkpoint rules table on its own (rename, split, transpose, concatenate,
reshape, drop; a missing and an unused key named), and every model's
``from_hf`` returning eval mode."""

from __future__ import annotations

import numpy as np
import pytest

from minivl import nn
from minivl.models.hf import Rule, convert, hf_activation, load_hf, rename


def test_rename_with_placeholders_and_alternatives():
    rules = [Rule("{bert.|}encoder.layer.{i}.output.{p}", "blocks.{i}.out.{p}"),
             Rule("h.{i}.mlp.{x}.{p}", "blocks.{i}.mlp.{x}.{p}"),
             Rule("h.{i}.attn.masked_bias", None)]
    assert rename("bert.encoder.layer.11.output.bias", rules) == "blocks.11.out.bias"
    assert rename("encoder.layer.0.output.weight", rules) == "blocks.0.out.weight"
    assert rename("h.2.mlp.c_fc.weight", rules) == "blocks.2.mlp.c_fc.weight"
    assert rename("h.2.attn.masked_bias", rules) is None
    with pytest.raises(KeyError, match="encoder.layer.0.output.gamma"):
        rename("encoder.layer.0.output.gamma", rules)


def test_split_and_transpose_like_gpt2_c_attn():
    w = np.arange(2 * 6, dtype=np.float32).reshape(2, 6)  # (in, 3 * out), Conv1D layout
    b = np.arange(6, dtype=np.float32)
    rules = [Rule("c_attn.{p}", ("q.{p}", "k.{p}", "v.{p}"), axis=-1, transpose=True)]
    out = convert({"c_attn.weight": w, "c_attn.bias": b}, rules)
    np.testing.assert_array_equal(out["q.weight"], w[:, 0:2].T)  # (out, in)
    np.testing.assert_array_equal(out["v.weight"], w[:, 4:6].T)
    np.testing.assert_array_equal(out["k.bias"], b[2:4])
    assert out["q.weight"].flags.c_contiguous and out["q.weight"].dtype == np.float32


def test_concat_and_reshape():
    q, k = np.ones((2, 3)), np.zeros((2, 3))
    rules = [Rule(("{x}.q", "{x}.k"), "{x}.qk"), Rule("cls", "cls_token", reshape=True)]
    out = convert({"a.q": q, "a.k": k, "cls": np.arange(3.0)}, rules, {"cls_token": (1, 1, 3)})
    np.testing.assert_array_equal(out["a.qk"], np.concatenate([q, k]))
    assert out["cls_token"].shape == (1, 1, 3)
    with pytest.raises(ValueError, match="lacks a.k to concatenate"):
        convert({"a.q": q}, rules)


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.head = nn.Linear(2, 3, bias=False)
        self.drop = nn.Dropout(0.5)


RULES = [Rule("dense.{p}", "fc.{p}"), Rule("out.weight", "head.weight")]


def pair_state():
    return {"dense.weight": np.ones((2, 3)), "dense.bias": np.zeros(2), "out.weight": np.ones((3, 2))}


def test_load_hf_copies_and_returns_eval_mode():
    model = load_hf(Pair(), pair_state(), RULES)
    assert not any(m.training for m in model.modules())
    np.testing.assert_array_equal(model.fc.weight.data, np.ones((2, 3)))


def test_a_missing_and_an_unused_key_are_named():
    state = pair_state()
    del state["dense.bias"]
    with pytest.raises(ValueError, match=r"Pair.from_hf: the checkpoint lacks fc\.bias"):
        load_hf(Pair(), state, RULES)
    load_hf(Pair(), state, RULES, optional=("fc.bias",))  # allowed when declared optional
    with pytest.raises(ValueError, match=r"no rule uses the checkpoint keys: pooler\.weight"):
        load_hf(Pair(), {**pair_state(), "pooler.weight": np.ones(2)}, RULES)
    with pytest.raises(ValueError, match=r"does not have: fc\.gamma"):
        load_hf(Pair(), pair_state(), [Rule("dense.weight", "fc.gamma"), *RULES])
    with pytest.raises(ValueError, match=r"fc\.weight: checkpoint \(3, 2\) vs model \(2, 3\)"):
        load_hf(Pair(), {**pair_state(), "dense.weight": np.ones((3, 2))}, RULES)


def test_unknown_activation_is_named():
    assert hf_activation("gelu_new") == "gelu_tanh"
    with pytest.raises(ValueError, match="'swish'"):
        hf_activation("swish")
