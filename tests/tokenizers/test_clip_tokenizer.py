"""``minivl.tokenizers.clip.CLIPTokenizer``: start and end tokens around the BPE
ids, the end-of-text id largest (so ``argmax`` finds it), cutting keeps it."""

from __future__ import annotations

import numpy as np

from minivl.models.clip import eot_positions
from minivl.tokenizers.clip import CLIPTokenizer


def test_clip_tokenizer_wraps_text_in_start_and_end_tokens():
    tok = CLIPTokenizer.train(["a photo of a red circle.", "a blue square."] * 5, 270, context_length=32)
    ids, mask = tok(["a red circle.", "a photo of a blue square."])
    assert tok.eot_id == tok.vocab_size - 1 and (ids[:, 0] == tok.sot_id).all()
    np.testing.assert_array_equal(eot_positions(ids), mask.sum(axis=1) - 1)
    assert tok.bpe.decode(ids[0, 1: mask[0].sum() - 1]) == "a red circle."
    short = CLIPTokenizer(tok.bpe, context_length=6)
    ids, mask = short(["a photo of a blue square and more words."])
    assert ids.shape == (1, 6) and ids[0, -1] == tok.eot_id  # cut, and the eot kept
