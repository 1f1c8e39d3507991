"""Byte-level BPE tokenizer, GPT-2 style (Radford et al., 2019; Sennrich et al., 2016)."""

from .bpe import BPETokenizer, train_bpe
from .gpt2_files import bytes_to_unicode, read_gpt2_files, write_gpt2_files
from .pattern import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, split_into_chunks
from .training import train_merges, train_merges_naive
from .visualise import show_tokens

__all__ = [
    "BPETokenizer",
    "train_bpe",
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "split_into_chunks",
    "train_merges",
    "train_merges_naive",
    "bytes_to_unicode",
    "read_gpt2_files",
    "write_gpt2_files",
    "show_tokens",
]
