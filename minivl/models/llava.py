"""LLaVA (Liu et al. 2023, "Visual Instruction Tuning"): a frozen CLIP eye, a
projector into the word-embedding space of a language model, and the
language model itself. Lecture S29-S37.

    images (B, C, H, W) -> CLIP's VisionEncoder, frozen
        -> hidden states of the penultimate layer, patch tokens only
           (the [CLS] token is dropped)                      features (B, N, Dv)
        -> projector: Linear (v1) or Linear-GELU-Linear (v1.5)   (B, N, D)
    ids (B, T) holding N copies of the <image> id (``minivl/data/llava_format.py``)
        -> GPT's token embeddings (B, T, D), the N image positions overwritten
           by the projected patches
        -> GPT's causal blocks, ln_f and tied head -> logits (B, T, V)

The loss is GPT's next-token cross-entropy on the labels the formatter wrote
(-100 everywhere except the assistant's answers and their end-of-turn
token). Stage 1 trains only the projector, stage 2 the projector and the
language model (``minivl/recipes/llava.py``); the vision tower is never
trained, so its features are computed without a graph (and can be cached:
``forward_features`` takes them directly).

``stream`` decodes greedily with GPT's key/value caches and yields one token
at a time; the caches it fills can be passed back in to continue a chat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivl import functional as F
from minivl import nn
from minivl.models.gpt import GPT
from minivl.models.text import sample_next
from minivl.models.vision import VisionEncoder
from minivl.tensor import Tensor, array_module, no_grad

PROJECTORS = ("linear", "mlp")  # LLaVA v1, LLaVA-1.5
IMAGE_POSITIONS = ("before", "after")  # the <image> placeholder before / after the first instruction


@dataclass
class LLaVAConfig:
    # vision: the CLIP image tower (minivl.models.clip.CLIPConfig's vision fields)
    image_size: int = 48
    patch_size: int = 16
    in_channels: int = 3
    vision_dim: int = 64
    vision_depth: int = 2
    vision_heads: int = 4
    vision_mlp_ratio: float = 4.0
    vision_activation: str = "quick_gelu"
    feature_layer: int = -2  # penultimate: LLaVA's "mm_vision_select_layer"
    # projector
    projector: str = "linear"
    # language model (minivl.models.gpt.GPTConfig)
    vocab_size: int = 512
    max_len: int = 128
    dim: int = 64
    depth: int = 2
    num_heads: int = 4
    image_token_id: int = 1
    # the template: the <image> placeholder "before" the first instruction ("<image>\nquestion")
    # or "after" it ("question\n<image>"); LLaVA's data holds both (minivl/data/llava_format.py)
    image_position: str = "before"

    @property
    def num_image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class Projector(nn.Module):
    """Patch features ``(B, N, Dv)`` -> word-embedding space ``(B, N, D)``."""

    def __init__(self, kind, vision_dim, dim):
        super().__init__()
        if kind not in PROJECTORS:
            raise ValueError(f"projector must be one of {PROJECTORS}, got {kind!r}")
        self.kind = kind
        self.fc1 = nn.Linear(vision_dim, dim)
        self.fc2 = nn.Linear(dim, dim) if kind == "mlp" else None

    def forward(self, x):
        x = self.fc1(x)  # (B, N, D)
        return x if self.fc2 is None else self.fc2(F.gelu(x))

    def extra_repr(self):
        return f"kind={self.kind!r}"


class LLaVA(nn.Module):
    """Vision tower (frozen) + projector + GPT."""

    Config = LLaVAConfig

    def __init__(self, config: LLaVAConfig | None = None, **overrides):
        super().__init__()
        c = self.config = LLaVAConfig(**{**(vars(config) if config else {}), **overrides})
        if c.image_position not in IMAGE_POSITIONS:
            raise ValueError(f"image_position must be one of {IMAGE_POSITIONS}, got {c.image_position!r}")
        self.vision = VisionEncoder(c.image_size, c.patch_size, c.in_channels, c.vision_dim,
                                    c.vision_depth, c.vision_heads, c.vision_mlp_ratio,
                                    activation=c.vision_activation, ln_pre=True, patch_bias=False)
        self.vision.requires_grad_(False)  # never trained (S34, S35)
        self.projector = Projector(c.projector, c.vision_dim, c.dim)
        self.lm = GPT(vocab_size=c.vocab_size, max_len=c.max_len, dim=c.dim, depth=c.depth,
                      num_heads=c.num_heads)

    @classmethod
    def from_parts(cls, clip, gpt, image_token_id, projector="linear", image_position="before"):
        """A LLaVA holding a trained CLIP's image tower and a pretrained GPT (copies of both)."""
        v, g = clip.config, gpt.config
        model = cls(image_size=v.image_size, patch_size=v.patch_size, in_channels=v.in_channels,
                    vision_dim=v.vision_dim, vision_depth=v.vision_depth, vision_heads=v.vision_heads,
                    vision_mlp_ratio=v.vision_mlp_ratio, vision_activation=v.activation,
                    projector=projector, vocab_size=g.vocab_size, max_len=g.max_len, dim=g.dim,
                    depth=g.depth, num_heads=g.num_heads, image_token_id=image_token_id,
                    image_position=image_position)
        model.vision.load_state_dict({k: np.array(a) for k, a in clip.vision_model.state_dict().items()})
        model.lm.load_state_dict({k: np.array(a) for k, a in gpt.state_dict().items()})
        model.vision.requires_grad_(False)
        return model

    # ------------------------------------------------------------------ the eye
    def image_features(self, images) -> np.ndarray:
        """Images ``(B, C, H, W)`` -> penultimate-layer patch states ``(B, N, Dv)``, no graph."""
        was = self.vision.training
        self.vision.eval()
        try:
            with no_grad(), nn.record(self.vision) as rec:
                self.vision(images)
            return rec.hidden[self.config.feature_layer].numpy()[:, 1:]  # drop [CLS]
        finally:
            self.vision.train(was)

    # ------------------------------------------------------------------ forward
    def forward(self, images, ids) -> Tensor:
        """Next-token logits ``(B, T, V)`` of ``ids`` with ``images`` in their <image> positions."""
        return self.forward_features(self.image_features(images), ids)

    def forward_features(self, features, ids, caches=None) -> Tensor:
        """As ``forward``, from cached ``features (B, N, Dv)`` (None: ids hold no image)."""
        ids = np.asarray(ids)
        starts = self.image_starts(ids, features)
        if starts is None:
            return self.lm(ids, caches=caches)
        B, T = ids.shape
        N = self.config.num_image_tokens
        tokens = self.lm.transformer.embeddings.token(ids)  # (B, T, D)
        xp = array_module(tokens.data)  # the constants below live where the model does
        patches = self.projector(Tensor(xp.asarray(features, dtype=np.float32)))  # (B, N, D)
        # patch n of row b goes to column starts[b] + n: a (B, T, N) one-hot placement
        place = np.zeros((B, T, N), np.float32)
        place[np.arange(B)[:, None], starts[:, None] + np.arange(N), np.arange(N)] = 1.0
        keep = (ids != self.config.image_token_id).astype(np.float32)[..., None]  # (B, T, 1)
        x = tokens * Tensor(xp.asarray(keep)) + Tensor(xp.asarray(place)) @ patches  # (B, T, D)
        return self.lm.lm_head(self.lm.transformer.forward_embeddings(x, caches))

    def image_starts(self, ids, features):
        """Where each row's N image ids begin ``(B,)``, or None when ids hold no image."""
        if ids.ndim != 2:
            raise ValueError(f"ids must have shape (B, T), got {ids.shape}")
        N, c = self.config.num_image_tokens, self.config
        is_image = ids == c.image_token_id
        if not is_image.any():
            if features is not None:
                raise ValueError("features were given but ids hold no <image> token")
            return None
        if features is None:
            raise ValueError("ids hold <image> tokens but no image or features were given")
        if np.shape(features) != (len(ids), N, c.vision_dim):  # np.shape: a CuPy array stays put
            raise ValueError(f"features must have shape (B, N, Dv) = ({len(ids)}, {N}, {c.vision_dim}),"
                             f" got {np.shape(features)}")
        starts = is_image.argmax(axis=1)
        expected = np.arange(ids.shape[1]) - starts[:, None]
        expected = (expected >= 0) & (expected < N)
        if not (is_image == expected).all():
            bad = int(np.flatnonzero((is_image != expected).any(axis=1))[0])
            raise ValueError(f"every row of ids {ids.shape} must hold exactly {N} consecutive <image> "
                             f"ids (row {bad} does not)")
        return starts

    def loss(self, features, ids, labels) -> Tensor:
        """Mean cross-entropy of the labelled tokens (labels -100 are ignored), shifted by one."""
        labels = np.asarray(labels)
        if labels.shape != np.shape(ids):
            raise ValueError(f"labels must have the shape of ids {np.shape(ids)}, got {labels.shape}")
        logits = self.forward_features(features, ids)[:, :-1]  # row t scores token t + 1
        return F.cross_entropy(logits, labels[:, 1:], ignore_index=-100)

    # ------------------------------------------------------------------ decoding
    def new_caches(self):
        return self.lm.transformer.new_caches()

    def stream(self, ids, features=None, caches=None, max_new_tokens=80, stop_id=None):
        """Greedy tokens ``(B,)`` one step at a time, with the key/value caches.

        ``caches`` (from ``new_caches``) may already hold earlier turns: ``ids``
        then continue them. Once every row has produced ``stop_id`` the stop
        token is fed in too, so the caches cover the whole conversation.
        """
        caches = self.new_caches() if caches is None else caches
        ids = np.asarray(ids)
        was = self.training
        self.eval()
        try:
            with no_grad():
                logits = self.forward_features(features, ids, caches)
                done = np.zeros(len(ids), bool)
                for _ in range(max_new_tokens):
                    nxt = sample_next(logits.numpy()[:, -1], 0.0)  # (B,), greedy
                    if stop_id is not None:
                        nxt = np.where(done, stop_id, nxt)
                    yield nxt
                    if stop_id is not None:
                        done |= nxt == stop_id
                    used = caches[0]["k"].shape[2]
                    if used + 1 > self.config.max_len:
                        break
                    logits = self.lm(nxt[:, None].astype(np.int64), caches=caches)
                    if stop_id is not None and done.all():
                        break
        finally:
            self.train(was)

    def generate(self, ids, features=None, max_new_tokens=80, stop_id=None) -> np.ndarray:
        """Greedy continuations ``(B, new)`` of equal-length prompts ``ids (B, T)``."""
        out = list(self.stream(ids, features, None, max_new_tokens, stop_id))
        return np.stack(out, axis=1) if out else np.zeros((len(ids), 0), np.int64)
