"""CLIP exercises: the symmetric InfoNCE loss with its gradient (S13, S15) and a
zero-shot classifier built from prompt templates (S16).

Radford et al. (2021), Figure 3 (the pseudo-code) and section 3.1.4 (prompt
ensembling). minivl's versions are ``minivl/losses.py::info_nce`` (forward;
its gradient comes from the autograd engine) and
``minivl/models/clip.py::CLIP.zero_shot_classifier``.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
from hypothesis import strategies as st

from minivl.exercises.check import Exercise, Mistake
from minivl.exercises.draw import DTYPES, SEEDS, array, sizes

# --------------------------------------------------------------------------- InfoNCE

INFO_NCE_STUB = '''
def info_nce(image_emb, text_emb, logit_scale):
    """CLIP's symmetric contrastive loss (slide S15) and its gradients, in NumPy.

    image_emb, text_emb: (n, d), L2-normalised rows; row i of each is a pair.
    logit_scale: a float t, the log of the inverse temperature.

        logits = exp(t) * image_emb @ text_emb.T             (n, n)
        loss_i = cross-entropy along axis 0 against labels  (softmax over each column's images:
                 each text finds its image)
        loss_t = cross-entropy along axis 1 against labels  (softmax over each row's texts:
                 each image finds its text)
        loss   = (loss_i + loss_t) / 2,   labels = arange(n), each CE averaged over the n columns/rows

    Returns (loss, d_image, d_text): the loss (a float, or a 0-d array in the
    embeddings' dtype) and its gradients with respect to image_emb and text_emb,
    (n, d) each (treat the embeddings as given: do not differentiate through the
    normalisation). exp(t) can be 100: keep the softmax stable.
    """
    raise NotImplementedError("info_nce")
'''


def _info_nce(image_emb, text_emb, logit_scale):
    """The reference: minivl's loss, differentiated by minivl's autograd engine."""
    from minivl.losses import info_nce
    from minivl.tensor import Tensor

    image, text = Tensor(image_emb, requires_grad=True), Tensor(text_emb, requires_grad=True)
    loss = info_nce(image, text, logit_scale)
    loss.backward()
    return np.asarray(loss.data, image_emb.dtype), image.grad.astype(image_emb.dtype), text.grad.astype(text_emb.dtype)


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _info_nce_numpy(image_emb, text_emb, logit_scale, both=True, use_exp=True, transpose_text=True):
    """The same loss written out by hand (and, with a flag off, one of the planted mistakes)."""
    n = len(image_emb)
    s = image_emb.dtype.type(math.exp(logit_scale) if use_exp else logit_scale)
    logits = s * image_emb @ text_emb.T
    eye = np.eye(n, dtype=image_emb.dtype)
    p_rows, p_cols = _softmax(logits, 1), _softmax(logits, 0)
    loss_t = -np.mean(np.log(np.diag(p_rows)))  # axis 1: each image finds its text
    loss_i = -np.mean(np.log(np.diag(p_cols)))  # axis 0: each text finds its image
    if both:
        loss, dlogits = (loss_i + loss_t) / 2, ((p_rows - eye) + (p_cols - eye)) / (2 * n)
    else:  # the planted mistake "one direction only"
        loss, dlogits = loss_t, (p_rows - eye) / n
    d_image = s * dlogits @ text_emb
    d_text = s * (dlogits.T if transpose_text else dlogits) @ image_emb
    return np.asarray(loss, image_emb.dtype), d_image, d_text


def _info_nce_loop(image_emb, text_emb, logit_scale):
    n = len(image_emb)
    logits = math.exp(logit_scale) * image_emb @ text_emb.T
    loss, d_logits = 0.0, np.zeros_like(logits)
    for i in range(n):
        for axis_vec, put in ((logits[i, :], lambda g, i=i: d_logits.__setitem__((i, slice(None)),
                                                                                 d_logits[i, :] + g)),
                              (logits[:, i], lambda g, i=i: d_logits.__setitem__((slice(None), i),
                                                                                 d_logits[:, i] + g))):
            m = axis_vec.max()
            lse = m + math.log(np.exp(axis_vec - m).sum())
            loss += (lse - axis_vec[i]) / (2 * n)
            g = np.exp(axis_vec - lse)
            g[i] -= 1
            put(g / (2 * n))
    s = math.exp(logit_scale)
    return loss, (s * d_logits @ text_emb).astype(image_emb.dtype), (s * d_logits.T @ image_emb).astype(image_emb.dtype)


@st.composite
def _nce_inputs(draw):
    n, d, dtype = draw(sizes(1, 6)), draw(sizes(1, 5)), draw(DTYPES)
    seed = draw(SEEDS)

    def unit(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)

    return {"image_emb": unit(array((n, d), np.float64, 1.0, seed)), "text_emb": unit(array((n, d), np.float64, 1.0,
                                                                                             seed + 1)),
            "logit_scale": draw(st.sampled_from([math.log(10.0), 0.0, math.log(100.0), 1.0]))}


INFO_NCE = Exercise(
    name="info_nce", slide="S15", part="ex2_clip", title="symmetric InfoNCE, forward and gradient",
    stub=INFO_NCE_STUB, reference=_info_nce,
    solution="minivl/losses.py::info_nce",
    inputs=_nce_inputs(),
    scale=lambda image_emb, text_emb, logit_scale: math.exp(logit_scale) / max(len(image_emb), 1),
    mistakes=[
        Mistake("one direction only", "the loss is symmetric: average the cross-entropy over the rows (image -> "
                "text) and over the columns (text -> image).", lambda *a: _info_nce_numpy(*a, both=False)),
        Mistake("exp forgotten", "logit_scale is the *log* temperature t: the logits are multiplied by exp(t).",
                lambda *a: _info_nce_numpy(*a, use_exp=False)),
        Mistake("d_text not transposed", "logits[i, j] pairs image i with text j, so d_text = exp(t) * "
                "dlogits.T @ image_emb.", lambda *a: _info_nce_numpy(*a, transpose_text=False)),
    ],
    hint="logits = exp(t) I T^T; dlogits = (softmax over rows - eye + softmax over columns - eye) / (2n).",
)
INFO_NCE.alternative = _info_nce_loop

# --------------------------------------------------------------------------- zero-shot classifier

ZERO_SHOT_STUB = '''
def zero_shot(image_emb, class_names, templates, encode_text, logit_scale):
    """CLIP's zero-shot classifier from prompt templates (slide S16), with prompt ensembling.

    image_emb: (N, d) image embeddings (not necessarily unit length).
    class_names: list of C strings; templates: list of T strings with one "{}",
    e.g. "a photo of a {}.". encode_text(list of strings) -> (len, d) text
    embeddings (not unit length). logit_scale: the multiplier of the cosines (e.g. 100).

    For each class, fill every template with its name, encode the prompts,
    L2-normalise each prompt embedding, average them over the templates, and
    L2-normalise the mean: that is the class's weight vector (C, d). Then
        probs = softmax(logit_scale * normalise(image_emb) @ weights.T)   over the classes
    Returns probs (N, C).
    """
    raise NotImplementedError("zero_shot")
'''


def fake_text_encoder(texts):
    """A stand-in text tower: a fixed pseudo-random vector of length 8 per string (deterministic)."""
    out = []
    for t in texts:
        rng = np.random.default_rng(zlib.crc32(t.encode("utf-8")))
        out.append(rng.standard_normal(8) * rng.uniform(0.2, 5.0))
    return np.array(out).reshape(len(texts), 8)


def _normalise(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _zero_shot(image_emb, class_names, templates, encode_text, logit_scale,
               per_prompt=True, renormalise=True, ensemble=True, normalise_image=True):
    templates = templates if ensemble else templates[:1]
    prompts = [t.format(name) for name in class_names for t in templates]  # class-major
    emb = encode_text(prompts)
    emb = _normalise(emb) if per_prompt else emb
    weights = emb.reshape(len(class_names), len(templates), -1).mean(axis=1)  # (C, d)
    weights = _normalise(weights) if renormalise else weights
    image = _normalise(image_emb) if normalise_image else image_emb
    return _softmax(logit_scale * image @ weights.T, axis=1)


def _zero_shot_loop(image_emb, class_names, templates, encode_text, logit_scale):
    weights = []
    for name in class_names:
        acc = np.zeros(image_emb.shape[1])
        for t in templates:
            e = encode_text([t.format(name)])[0]
            acc += e / np.sqrt(e @ e)
        weights.append(acc / np.sqrt(acc @ acc))
    probs = []
    for x in image_emb:
        z = logit_scale * np.array([w @ x for w in weights]) / np.sqrt(x @ x)
        z = np.exp(z - z.max())
        probs.append(z / z.sum())
    return np.array(probs)


NAMES = ["cat", "dog", "circle", "red square", "seven", "guacamole", "ceviche"]
TEMPLATES = ["a photo of a {}.", "{}", "a drawing of the {}.", "a blurry photo of a {}.", "itap of a {}."]


@st.composite
def _zero_shot_inputs(draw):
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    templates = draw(st.lists(st.sampled_from(TEMPLATES), min_size=1, max_size=3, unique=True))
    n = draw(sizes(1, 4))
    return {"image_emb": array((n, 8), np.float64, draw(st.sampled_from([1.0, 0.1, 10.0])), draw(SEEDS)),
            "class_names": names, "templates": templates, "encode_text": fake_text_encoder,
            "logit_scale": draw(st.sampled_from([100.0, 1.0, 10.0]))}


ZERO_SHOT = Exercise(
    name="zero_shot", slide="S16", part="ex2_clip", title="zero-shot classifier from prompt templates",
    stub=ZERO_SHOT_STUB, reference=_zero_shot,
    solution="minivl/models/clip.py::CLIP.zero_shot_classifier (and CLIP.predict)",
    inputs=_zero_shot_inputs(),
    scale=lambda **kw: 1.0,
    mistakes=[
        Mistake("prompts not normalised", "normalise each prompt's embedding *before* averaging, or prompts with "
                "long embeddings dominate the class vector.", lambda *a: _zero_shot(*a, per_prompt=False)),
        Mistake("mean not renormalised", "the mean of unit vectors is shorter than 1: normalise it again, or "
                "classes with disagreeing prompts get smaller logits.", lambda *a: _zero_shot(*a, renormalise=False)),
        Mistake("one template only", "use every template (prompt ensembling), not only the first.",
                lambda *a: _zero_shot(*a, ensemble=False)),
        Mistake("image not normalised", "the logits are scaled *cosines*: normalise the image embeddings too.",
                lambda *a: _zero_shot(*a, normalise_image=False)),
    ],
)
ZERO_SHOT.alternative = _zero_shot_loop

EXERCISES = [INFO_NCE, ZERO_SHOT]
