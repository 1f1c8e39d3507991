"""Fixtures shared by the recipe tests."""

import pytest


@pytest.fixture(scope="module")
def parts():
    """A tiny LLaVA's pieces: the data (with the frozen eye's features computed), a CLIP and a GPT."""
    from minivl.models.clip import CLIP
    from minivl.models.gpt import GPT
    from minivl.random import manual_seed
    from minivl.recipes.llava import LLaVAData, build

    manual_seed(0)
    data = LLaVAData(n_train=40, n_test=10, seed=0, vocab_size=600)
    gpt = GPT(vocab_size=data.tokenizer.vocab_size, max_len=128, dim=16, depth=1, num_heads=2)
    clip = CLIP(image_size=48, patch_size=16, vision_dim=16, vision_depth=2, vision_heads=2,
                vocab_size=40, context_length=8, text_dim=16, text_depth=1, text_heads=2, embed_dim=8)
    data.compute_features(build(data, clip, gpt))
    return data, clip, gpt
