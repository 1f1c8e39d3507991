"""Recording what a forward pass computes on the way: every attention layer's
weights and every transformer stack's hidden states, on request.

Every ``forward`` in minivl returns one Tensor, as nanoGPT's ``Block.forward``
does; nothing extra travels back through the layers. Attention maps and
rollout (lecture S01, Abnar & Zuidema 2020) and LLaVA's penultimate-layer
image features (S29) are read from a recording instead:

    with nn.record(vit.encoder) as rec:
        logits = vit(images)
    rec.weights      # one (B, H, Nq, Nk) Tensor per attention layer, in module order
    rec.hidden       # [block input, after block 1, ..., after block depth] of the one stack

Inside the ``with`` block each ``MultiHeadAttention`` and ``Transformer``
under the module has its ``recording`` flag on and keeps the outputs of its
latest call (``last_weights``, ``last_hidden``); on leaving, the recording
keeps them and the modules forget them.
"""

from __future__ import annotations

from minivl.nn.attention import MultiHeadAttention
from minivl.nn.transformer import Transformer


class record:
    """Context manager: ``with record(module) as rec: module(...)``; then ``rec.weights``, ``rec.hidden``."""

    def __init__(self, module):
        self.attention = [m for m in module.modules() if isinstance(m, MultiHeadAttention)]
        self.stacks = [(name, m) for name, m in module.named_modules() if isinstance(m, Transformer)]
        if not self.attention:
            raise ValueError(f"record: {type(module).__name__} holds no attention layer to record")
        self._weights = self._hidden = None

    def __enter__(self):
        for m in self._recorders():
            m.recording = True
        return self

    def __exit__(self, *exc):
        self._weights, self._hidden = self._live_weights(), self._live_hidden()
        for m in self.attention:
            m.recording, m.last_weights = False, None
        for _, m in self.stacks:
            m.recording, m.last_hidden = False, None
        return False

    @property
    def weights(self) -> list:
        """Each attention layer's last weights ``(B, H, Nq, Nk)``, in module order."""
        return self._live_weights() if self._weights is None else self._weights

    @property
    def hidden(self) -> list:
        """The stack's last hidden states: ``depth + 1`` Tensors ``(B, N, D)``, input first.

        A module with two stacks (CLIP's towers) is ambiguous: record one tower.
        """
        if len(self.stacks) != 1:
            names = [name or "(the module itself)" for name, _ in self.stacks]
            raise ValueError(f"record.hidden needs exactly one transformer stack, the module has "
                             f"{len(names)}: {names}; record one of them (e.g. clip.vision_model)")
        return self._live_hidden()[0] if self._hidden is None else self._hidden[0]

    def _recorders(self):
        return self.attention + [m for _, m in self.stacks]

    def _live_weights(self):
        return [m.last_weights for m in self.attention]

    def _live_hidden(self):
        return [m.last_hidden for _, m in self.stacks]
