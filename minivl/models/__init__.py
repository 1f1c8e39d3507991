"""The models of the lecture, one per file, all on the shared ``minivl.nn``
transformer block:

* ``bert.BERT``  -- masked language modelling, post-LN (S01)
* ``gpt.GPT``    -- causal language modelling with generation, pre-LN (S01)
* ``vit.ViT``    -- the vision transformer; ``vision.VisionEncoder`` is its
  encoder, reused by CLIP and LLaVA (S01, S14, S29)
* ``clip.CLIP``  -- dual encoders and the symmetric contrastive loss (S12-S16)

What they share besides the towers (``text.py``, ``vision.py``): one input
contract checked at the door (``inputs.py``), one loader for Hugging Face
checkpoints driven by each model's rules table (``hf.py``), and one
checkpoint format (``checkpoint.py``). Every ``forward`` returns one Tensor;
attention weights and hidden states are recorded with ``minivl.nn.record``.

Import them from their modules (``from minivl.models.clip import CLIP``) or
from here.
"""

from minivl.models.bert import BERT
from minivl.models.clip import CLIP
from minivl.models.gpt import GPT
from minivl.models.vision import VisionEncoder
from minivl.models.vit import ViT

__all__ = ["BERT", "CLIP", "GPT", "ViT", "VisionEncoder"]
