"""Layers and containers: ``from minivl import nn``."""

from minivl.nn import init
from minivl.nn.activations import get_activation
from minivl.nn.attention import MultiHeadAttention
from minivl.nn.coattention import CoAttentionBlock
from minivl.nn.layers import Conv2d, Dropout, Embedding, Identity, LayerNorm, Linear, ModuleList, Sequential
from minivl.nn.module import Module, Parameter
from minivl.nn.pvt import PVTBlock, PVTTransformer, SpatialReductionAttention
from minivl.nn.record import record
from minivl.nn.swin import PatchMerging, SwinBlock, SwinStage, SwinTransformer, WindowAttention
from minivl.nn.transformer import MLP, Transformer, TransformerBlock

__all__ = [
    "CoAttentionBlock", "Conv2d", "Dropout", "Embedding", "Identity", "LayerNorm", "Linear", "MLP", "Module",
    "ModuleList",
    "MultiHeadAttention", "PVTBlock", "PVTTransformer", "Parameter", "PatchMerging", "Sequential",
    "SpatialReductionAttention", "SwinBlock", "SwinStage", "SwinTransformer", "Transformer", "TransformerBlock",
    "WindowAttention", "get_activation", "init", "record",
]
