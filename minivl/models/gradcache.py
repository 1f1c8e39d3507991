"""Gradient caching: the exact gradient of a big contrastive batch, computed in
small chunks (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size
under Memory Limited Setup"). Lecture S14: CLIP trained with 32,768 pairs
per batch, far more activations than one device holds.

The contrastive loss couples every pair with every other one, so a big batch
cannot simply be split into independent micro-batches. But it depends on the
encoders only through the embeddings, and the embeddings are small:

1. encode every chunk *without* a graph (``no_grad``): only ``(n, E)`` embeddings;
2. build the loss on those embeddings (as leaves) and backpropagate it: this
   gives ``dL/d(embedding)`` for all n rows, and the temperature's gradient;
3. for each chunk, encode it again *with* a graph and call
   ``emb.backward(dL/d(emb of this chunk))``: the chain rule from the cached
   embedding gradient into the weights. Parameter gradients add up across
   chunks, so after the last one they equal the full-batch gradient exactly.

Memory is one chunk's activations plus ``n x E`` numbers; the price is a
second forward pass. A batch of 4,096 in chunks of 256 gives the same update
as the batch of 4,096 at once (``tests/models/test_clip.py`` checks it to
1e-10 in float64).

Randomness: the re-run must compute the same function as the first pass. With
dropout off (CLIP's default) that is automatic. Otherwise the global generator
(``minivl.random``) is captured before each chunk's first pass and restored
for its re-run, so every dropout mask is drawn again identically, and
afterwards left where the first pass ended.
"""

from __future__ import annotations

import copy

import numpy as np

from minivl import random as mv_random
from minivl.tensor import Tensor, array_module, no_grad


class GradCacheStep:
    """Not a Tensor: the full-batch loss of one gradient-cached step, and its chunked backward.

    It offers exactly the two calls a training loop makes on a loss
    (``minivl.train.train`` duck-types it): ``item()``, the full-batch value,
    and ``backward()``, which runs steps 2 and 3 above and leaves the
    full-batch gradient in every parameter's ``.grad``. Nothing else of a
    Tensor is here: no arithmetic, no ``.data``, no graph to build on. The
    loss Tensor over the cached embeddings is ``.loss``; call ``backward()``
    once.
    """

    def __init__(self, loss: Tensor, towers, leaves, rng_after):
        self.loss, self.towers, self.leaves, self.rng_after = loss, towers, leaves, rng_after

    def item(self) -> float:
        return float(self.loss.item())

    def backward(self):
        if self.towers is None:
            raise RuntimeError("GradCacheStep.backward() was already called; the chunks are gone")
        self.loss.backward()  # step 2: dL/d(embeddings) into the leaves, and dL/d(temperature)
        for (encode, chunks), leaf in zip(self.towers, self.leaves):
            for inputs, rng_state, rows in chunks:  # step 3, one chunk at a time
                _restore_rng(rng_state)
                emb = encode(*inputs)  # (chunk, E), with a graph this time
                emb.backward(leaf.grad[rows])
        _restore_rng(self.rng_after)
        self.towers = None  # the chunks' inputs are no longer needed


def grad_cache_loss(loss_fn, towers, chunk_size) -> GradCacheStep:
    """Compute ``loss_fn(*embeddings)`` over the full batch, in chunks of ``chunk_size`` rows.

    ``towers`` is a list of ``(encode, inputs)``: ``encode(*inputs)`` maps a
    chunk of the inputs (arrays sliced along axis 0; ``None`` passes through)
    to embeddings ``(rows, E)``. ``loss_fn`` takes one full ``(n, E)``
    embedding Tensor per tower. CLIP's case, with the towers' inputs
    ``(images,)`` and ``(ids, mask)``::

        loss = grad_cache_loss(lambda i, t: info_nce(i, t, model.logit_scale),
                               [(model.encode_image, (images,)),
                                (model.encode_text, (ids, mask))], 256)
        loss.item()               # the full-batch loss (a float; ``loss`` is not a Tensor)
        loss.backward()           # the full-batch gradient, chunk by chunk
    """
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    plans, leaves = [], []
    for encode, inputs in towers:
        n = _rows(inputs)
        chunks, embs = [], []
        for start in range(0, n, chunk_size):
            rows = slice(start, min(start + chunk_size, n))
            chunk = tuple(None if x is None else x[rows] for x in inputs)
            state = _capture_rng()
            with no_grad():
                embs.append(encode(*chunk).data)  # step 1: (rows, E), no graph kept
            chunks.append((chunk, state, rows))
        plans.append((encode, chunks))
        leaves.append(Tensor(array_module(embs[0]).concatenate(embs), requires_grad=True))  # (n, E)
    return GradCacheStep(loss_fn(*leaves), plans, leaves, _capture_rng())


def _rows(inputs) -> int:
    sizes = {len(x) for x in inputs if x is not None}
    if len(sizes) != 1:
        raise ValueError(f"a tower's inputs must share their first axis, got lengths {sorted(sizes)}")
    return sizes.pop()


def _capture_rng():
    return copy.deepcopy(mv_random.rng().bit_generator.state)


def _restore_rng(state):
    mv_random.rng().bit_generator.state = state
