"""The location probe of issue 12 (minivl/recipes/vilbert_probe.py): the ridge probe against
known answers, and reading a checkpoint written before the location was standardised."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np

import minivl as mv
from minivl import tiny
from minivl.checkpoint import save_checkpoint
from minivl.io import load, load_metadata, save
from minivl.models.vilbert import ViLBERT
from minivl.recipes.vilbert_probe import RAW_LOCATION, load_vilbert, ridge_probe


def test_ridge_probe_known_answers():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 6))
    assert ridge_probe(X, X @ np.arange(6.0) + 1, lam=1e-6) > 0.999  # a linear target: R^2 1
    assert ridge_probe(X, rng.standard_normal(400)) < 0.05  # noise: nothing to read
    assert ridge_probe(X, (X[:, 2] > 0).astype(float), classify=True) > 0.9  # labels a linear rule separates
    assert 0.3 < ridge_probe(X, rng.integers(0, 2, 400).astype(float), classify=True) < 0.7


def test_a_checkpoint_from_before_the_fix_reads_with_the_raw_location(tmp_path):
    mv.manual_seed(0)
    old = ViLBERT(replace(tiny.vilbert_config(), **RAW_LOCATION)).eval()
    save_checkpoint(old, tmp_path / "v.safetensors")
    # what the file held before the fix: no location buffers, no location fields in the config
    state = {k: v for k, v in load(tmp_path / "v.safetensors").items() if "location_" not in k}
    meta = load_metadata(tmp_path / "v.safetensors")
    config = {k: v for k, v in asdict(old.config).items() if not k.startswith("location_")}
    save(state, tmp_path / "old.safetensors", metadata={**meta, "config": json.dumps(config)})
    again = load_vilbert(tmp_path / "old.safetensors").eval()
    rng = np.random.default_rng(1)
    feats = rng.standard_normal((2, 3, 10)).astype(np.float32)
    locs = rng.random((2, 3, 5)).astype(np.float32)
    args = (np.array([[1, 2, 3], [4, 5, 6]]), np.ones((2, 3), bool), feats, locs, np.ones((2, 3), bool))
    np.testing.assert_allclose(again(*args).data, old(*args).data, atol=1e-6)
    assert again.config.location_std == (1.0,) * 5
    new = ViLBERT(tiny.vilbert_config())
    save_checkpoint(new, tmp_path / "new.safetensors")
    assert load_vilbert(tmp_path / "new.safetensors").config.location_std == new.config.location_std
