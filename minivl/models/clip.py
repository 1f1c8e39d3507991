"""CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural
Language Supervision"): an image tower and a text tower trained so that a
picture and its caption land on the same point of one embedding space.
Lecture S12-S18.

    images (B, C, H, W) -> VisionEncoder (patches, [CLS], ln_pre, pre-LN blocks,
        ln_post) -> [CLS] state (B, Dv) -> visual_projection (no bias) -> L2 norm
    ids (B, L) -> CausalTextEncoder (token + position embeddings, causal
        pre-LN blocks, ln_f) -> state at the end-of-text token (B, Dt)
        -> text_projection (no bias) -> L2 norm
    logits_per_image = exp(logit_scale) * image_emb @ text_emb.T        (B, B)

Both towers are the shared ones (``minivl/models/vision.py``,
``minivl/models/text.py``); CLIP only adds the projections, the learned
temperature and the choice of which token speaks for the sentence. Metrics live
in ``minivl/metrics.py``, the tokenizer in ``minivl/tokenizers/clip.py``.

The temperature. ``logit_scale`` is learned in log space, initialised to
``log(1 / 0.07)`` (scale 14.3), and used as ``exp(logit_scale)``. As in the
paper (section 2.5) and open_clip, the *parameter* is clipped to at most
``log(100)`` after every optimizer step (``clamp_logit_scale_``; the recipe
and the gradient cache call it), so the scale never exceeds 100; ``forward``
uses the parameter as it is, which keeps it identical to Hugging Face's.

The end-of-text token. OpenAI's CLIP reads the text features at
``ids.argmax(-1)``: its end-of-text id is the largest in the vocabulary.
``minivl.tokenizers.clip.CLIPTokenizer`` keeps that property (``<|endoftext|>``
is the last id), so minivl does the same by default. With ``eot_id`` set in the config the
first position holding that id is used instead (Hugging Face's rule for
configs whose ``eos_token_id`` is not the legacy value 2), and with a
``key_padding_mask`` and no ``eot_id``, the last real token.

Loading the real weights (no download here; bring the files yourself)::

    import json, minivl as mv
    from minivl.models.clip import CLIP, OPENAI_MEAN, OPENAI_STD
    from minivl.models.vision import preprocess
    state = mv.load("clip-vit-base-patch32/model.safetensors")     # pure NumPy reader
    config = json.load(open("clip-vit-base-patch32/config.json"))   # a plain dict
    model = CLIP.from_hf(state, config)
    pixels = preprocess(images_224, mean=OPENAI_MEAN, std=OPENAI_STD)  # (B, 3, 224, 224)
    probs = model.predict(pixels, classifier)

What works and what does not: the weights, both towers and the logits are
exact (checked against ``transformers.CLIPModel`` on tiny configs in
``tests/models/test_clip.py``). The *tokenizer* is the gap: CLIP's BPE
lower-cases and cleans the text, splits it with its own regex and marks the
end of every word with ``</w>`` in ``vocab.json`` / ``merges.txt``.
``BPETokenizer.from_gpt2_files`` reads GPT-2's byte-level files, which have no
``</w>``; fed CLIP's files it would produce wrong ids. So build the
``classifier`` from ids made by another CLIP tokenizer (e.g. transformers'
``CLIPTokenizer``, offline, from the same two files) and pass them to
``encode_text``; images, towers and zero-shot scoring then run in NumPy.
Resize images to 224 x 224 (bicubic, centre crop) before ``preprocess``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from minivl import functional as F
from minivl import nn
from minivl.losses import info_nce
from minivl.metrics import embed_images
from minivl.models.hf import Rule, hf_activation, hf_setting, load_hf
from minivl.models.text import CausalTextEncoder
from minivl.models.vision import VisionEncoder
from minivl.tensor import Tensor, no_grad

# The pixel statistics OpenAI's CLIP was trained with (per RGB channel).
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

@dataclass
class CLIPConfig:
    embed_dim: int = 64  # the shared space (ViT-B/32: 512)
    # image tower (ViT-B/32: 224 / 32, width 768, 12 layers, 12 heads)
    image_size: int = 48  # the shapes world's grid layout: 3 x 3 cells of 16 px,
    patch_size: int = 16  # one patch per cell (see minivl.data.clip_pairs)
    in_channels: int = 3
    vision_dim: int = 64
    vision_depth: int = 2
    vision_heads: int = 4
    vision_mlp_ratio: float = 4.0
    vision_attention: str = "global"  # or "swin" / "pvt" (VisionEncoder, lectures/07-scale.md)
    vision_window_size: int = 4
    vision_sr_ratio: int = 2
    # text tower (ViT-B/32: vocabulary 49,408, context 77, width 512, 12 layers, 8 heads)
    vocab_size: int = 512
    context_length: int = 32
    text_dim: int = 64
    text_depth: int = 2
    text_heads: int = 4
    text_mlp_ratio: float = 4.0
    eot_id: int | None = None  # None: the end-of-text token is the largest id (see above)
    # both
    activation: str = "quick_gelu"  # x * sigmoid(1.702 x)
    dropout: float = 0.0  # CLIP trains without dropout
    eps: float = 1e-5
    logit_scale_init: float = math.log(1 / 0.07)
    max_logit_scale: float = math.log(100.0)


class CLIP(nn.Module):
    """Two towers, two projections without bias, one learned temperature."""

    Config = CLIPConfig

    def __init__(self, config: CLIPConfig | None = None, **overrides):
        super().__init__()
        c = self.config = CLIPConfig(**{**(vars(config) if config else {}), **overrides})
        self.vision_model = VisionEncoder(
            c.image_size, c.patch_size, c.in_channels, c.vision_dim, c.vision_depth,
            c.vision_heads, c.vision_mlp_ratio, activation=c.activation, ln_pre=True,
            patch_bias=False, dropout=c.dropout, eps=c.eps, attention=c.vision_attention,
            window_size=c.vision_window_size, sr_ratio=c.vision_sr_ratio,
        )  # fmt: skip
        self.visual_projection = nn.Linear(c.vision_dim, c.embed_dim, bias=False)
        self.text_model = CausalTextEncoder(
            c.vocab_size, c.context_length, c.text_dim, c.text_depth, c.text_heads,
            c.text_mlp_ratio, c.activation, c.dropout, c.eps,
        )  # fmt: skip
        self.text_projection = nn.Linear(c.text_dim, c.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(np.array(c.logit_scale_init, dtype=np.float32))
        # OpenAI's initialisation of the projections: N(0, width^-1).
        for proj, width in ((self.visual_projection, c.vision_dim), (self.text_projection, c.text_dim)):
            proj.weight.data[...] = nn.init.normal(proj.weight.shape, width**-0.5)

    # ------------------------------------------------------------------ the two towers
    def encode_image(self, images, normalize=True) -> Tensor:
        """Images ``(B, C, H, W)`` (floats; see ``preprocess``) -> embeddings ``(B, E)``."""
        hidden = self.vision_model(images)  # (B, 1+N, Dv), ln_post applied
        features = self.visual_projection(hidden[:, 0])  # (B, E): the [CLS] token speaks
        return F.l2_normalize(features, axis=-1) if normalize else features

    def encode_text(self, ids, key_padding_mask=None, normalize=True) -> Tensor:
        """Token ids ``(B, L)`` -> embeddings ``(B, E)`` read at the end-of-text token."""
        hidden = self.text_model(ids, key_padding_mask=key_padding_mask)  # (B, L, Dt), ln_f applied
        at = eot_positions(ids, key_padding_mask, self.config.eot_id)  # (B,)
        features = self.text_projection(hidden[np.arange(len(ids)), at])  # (B, E)
        return F.l2_normalize(features, axis=-1) if normalize else features

    def forward(self, images, ids, key_padding_mask=None):
        """``logits_per_image (B_img, B_txt)``: scaled cosine similarities of every pair.

        One Tensor, as every forward; the text-side logits are its transpose,
        ``logits.T`` (Hugging Face's ``logits_per_text``).
        """
        image_emb = self.encode_image(images)
        text_emb = self.encode_text(ids, key_padding_mask)
        return (image_emb @ text_emb.T) * F.exp(self.logit_scale)  # (B_img, B_txt)

    def loss(self, images, ids, key_padding_mask=None) -> Tensor:
        """The symmetric contrastive loss of one batch of aligned pairs (S15)."""
        return info_nce(self.encode_image(images), self.encode_text(ids, key_padding_mask),
                        self.logit_scale)

    def clamp_logit_scale_(self):
        """Clip the temperature parameter to ``[0, log 100]``; call after each optimizer step."""
        scale = self.logit_scale.data  # a NumPy or CuPy array: clip it in its own module
        scale[...] = scale.clip(0.0, self.config.max_logit_scale)
        return self

    @property
    def scale(self) -> float:
        """The current multiplier ``exp(logit_scale)`` of the cosine similarities."""
        return math.exp(float(self.logit_scale.data))

    # ------------------------------------------------------------------ zero-shot (S16)
    def zero_shot_classifier(self, class_names, templates, tokenizer) -> np.ndarray:
        """One unit vector per class, ``(C, E)``: the text tower as a linear classifier.

        Every template ("a photo of a {}.") is filled with every class name;
        each prompt is encoded and normalised, the prompts of a class are
        averaged (prompt ensembling, section 3.1.4 of the paper) and the mean
        is normalised again. ``tokenizer(texts)`` returns ``(ids, mask)``, as
        ``CLIPTokenizer`` does.
        """
        templates = [templates] if isinstance(templates, str) else list(templates)
        if not class_names or not templates:
            raise ValueError("zero_shot_classifier needs at least one class name and one template")
        for t in templates:
            if "{}" not in t:
                raise ValueError(f"every template must contain '{{}}', got {t!r}")
        prompts = [t.format(name) for name in class_names for t in templates]  # class-major
        ids, mask = tokenizer(prompts)
        with no_grad():
            emb = self.encode_text(ids, mask).numpy()  # (C * T, E), unit rows
        mean = emb.reshape(len(class_names), len(templates), -1).mean(axis=1)  # (C, E)
        return mean / np.linalg.norm(mean, axis=-1, keepdims=True)

    def predict(self, images, classifier, batch_size=256) -> np.ndarray:
        """Per-class probabilities ``(B, C)``: softmax of the scaled cosine similarities.

        ``images`` are floats ``(B, C, H, W)`` or a uint8 batch ``(B, H, W[, C])``
        (run through ``preprocess``); ``classifier`` comes from
        ``zero_shot_classifier``. The probabilities are what the slide shows
        next to each prompt ("guacamole 90.1%").
        """
        image_emb = embed_images(self, images, batch_size)  # (B, E)
        logits = self.scale * image_emb @ np.asarray(classifier, dtype=image_emb.dtype).T  # (B, C)
        logits -= logits.max(axis=-1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=-1, keepdims=True)

    # ------------------------------------------------------------------ Hugging Face weights
    @classmethod
    def from_hf(cls, state_dict, hf_config):
        """A CLIP holding the weights of a Hugging Face ``CLIPModel``.

        ``state_dict`` maps HF names to arrays (NumPy or torch; ``mv.load`` of
        the ``model.safetensors`` file is fine); ``hf_config`` is the
        ``config.json`` dict, ``CLIPConfig.to_dict()`` or the config object.
        Returned in eval mode. The rules table ``HF_RULES`` below is all it takes.
        """
        text, vision = hf_setting(hf_config, "text_config"), hf_setting(hf_config, "vision_config")
        if text is None or vision is None:
            raise ValueError("hf_config must hold 'text_config' and 'vision_config' (a CLIPModel config)")
        t = lambda name, default=None: hf_setting(text, name, default)
        v = lambda name, default=None: hf_setting(vision, name, default)
        activation = hf_activation(t("hidden_act", "quick_gelu"))
        if hf_activation(v("hidden_act", "quick_gelu")) != activation:
            raise ValueError("minivl's CLIP uses one activation for both towers")
        eos = t("eos_token_id", 2)
        config = CLIPConfig(
            embed_dim=hf_setting(hf_config, "projection_dim", 512),
            image_size=v("image_size", 224), patch_size=v("patch_size", 32),
            in_channels=v("num_channels", 3), vision_dim=v("hidden_size"),
            vision_depth=v("num_hidden_layers"), vision_heads=v("num_attention_heads"),
            vision_mlp_ratio=v("intermediate_size") / v("hidden_size"),
            vocab_size=t("vocab_size"), context_length=t("max_position_embeddings", 77),
            text_dim=t("hidden_size"), text_depth=t("num_hidden_layers"),
            text_heads=t("num_attention_heads"),
            text_mlp_ratio=t("intermediate_size") / t("hidden_size"),
            eot_id=None if eos == 2 else int(eos),  # 2: the legacy configs, read at argmax(ids)
            activation=activation,
            eps=t("layer_norm_eps", 1e-5),
            logit_scale_init=hf_setting(hf_config, "logit_scale_init_value", math.log(1 / 0.07)),
        )  # fmt: skip
        if v("layer_norm_eps", 1e-5) != config.eps:
            raise ValueError("minivl's CLIP uses one layer_norm_eps for both towers")
        return load_hf(cls(config), state_dict, HF_RULES)


# HF CLIPModel names -> ours. HF stores Linear weights as (out, in) too; the
# class and position embeddings gain the leading axes of our parameters.
_VB, _TB = "vision_model.encoder.layers.{i}", "text_model.encoder.layers.{i}"
HF_RULES = [
    Rule("logit_scale", "logit_scale"),
    Rule("visual_projection.weight", "visual_projection.weight"),
    Rule("text_projection.weight", "text_projection.weight"),
    Rule("vision_model.embeddings.class_embedding", "vision_model.cls_token", reshape=True),
    Rule("vision_model.embeddings.position_embedding.weight", "vision_model.pos_embed", reshape=True),
    Rule("vision_model.embeddings.patch_embedding.weight", "vision_model.patch_embed.weight"),
    Rule("vision_model.pre_layrnorm.{p}", "vision_model.ln_pre.{p}"),  # sic: HF's spelling
    Rule(_VB + ".self_attn.{x}.{p}", "vision_model.transformer.blocks.{i}.attn.{x}.{p}"),
    Rule(_VB + ".layer_norm1.{p}", "vision_model.transformer.blocks.{i}.ln_1.{p}"),
    Rule(_VB + ".layer_norm2.{p}", "vision_model.transformer.blocks.{i}.ln_2.{p}"),
    Rule(_VB + ".mlp.{x}.{p}", "vision_model.transformer.blocks.{i}.mlp.{x}.{p}"),
    Rule("vision_model.post_layernorm.{p}", "vision_model.ln_post.{p}"),
    Rule("text_model.embeddings.token_embedding.weight", "text_model.embeddings.token.weight"),
    Rule("text_model.embeddings.position_embedding.weight", "text_model.embeddings.position.weight"),
    Rule(_TB + ".self_attn.{x}.{p}", "text_model.encoder.blocks.{i}.attn.{x}.{p}"),
    Rule(_TB + ".layer_norm1.{p}", "text_model.encoder.blocks.{i}.ln_1.{p}"),
    Rule(_TB + ".layer_norm2.{p}", "text_model.encoder.blocks.{i}.ln_2.{p}"),
    Rule(_TB + ".mlp.{x}.{p}", "text_model.encoder.blocks.{i}.mlp.{x}.{p}"),
    Rule("text_model.final_layer_norm.{p}", "text_model.ln_f.{p}"),
    Rule("{vision|text}_model.embeddings.position_ids", None),  # an index buffer older files saved
]


def eot_positions(ids, key_padding_mask=None, eot_id=None) -> np.ndarray:
    """The position of each row's end-of-text token, ``(B,)``.

    ``eot_id`` given: its first occurrence (a row without one is an error);
    else with ``key_padding_mask`` (True = real token): the last real token;
    else ``ids.argmax(-1)``, OpenAI's rule (the end-of-text id is the largest).
    """
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"token ids must have shape (B, L), got {ids.shape}")
    if eot_id is not None:
        hit = ids == eot_id
        if not hit.any(axis=1).all():
            rows = np.flatnonzero(~hit.any(axis=1)).tolist()
            raise ValueError(f"rows {rows} of ids {ids.shape} hold no end-of-text id {eot_id}")
        return hit.argmax(axis=1)
    if key_padding_mask is not None:
        mask = np.asarray(key_padding_mask, dtype=bool)
        if mask.shape != ids.shape:
            raise ValueError(f"key_padding_mask {mask.shape} must match ids {ids.shape}")
        if not mask.any(axis=1).all():
            raise ValueError("every row of key_padding_mask needs at least one real token")
        return mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1)
    return ids.argmax(axis=1)
