"""Data for minivl: the shapes world, scikit-learn's digits, and batching.

No network at run time. ``ShapesWorld`` is the usual entry point:

    from minivl.data import ShapesWorld
    world = ShapesWorld(image_size=32, max_objects=3, seed=0)
    scenes = world.scenes(1000, split="train")
    images = world.render(scenes)                # (1000, 32, 32, 3) uint8
    captions = world.captions(scenes)

Files, one idea each: shapes (scenes, compositional split), splits (the
i.i.d. train / val / test parts), render (pixels), boxes, detector (soft
class distributions), language (shared wording), balance (answer-first
drawing), captions, foil, vqa, refexp, nlvr, dialog, multiple_choice,
retrieval, instructions, world (the facade), blind (text-only baselines),
digits, loader (batches), augment.
"""

from minivl.data.augment import compose, random_flip, random_shift
from minivl.data.boxes import box_iou, location_features, stack_objects
from minivl.data.captions import (
    CAPTION_KINDS,
    CLIP_TEMPLATES,
    Caption,
    class_prompts,
    holds,
    sample_caption,
    sample_captions,
)
from minivl.data.detector import class_similarity, detector_distributions
from minivl.data.dialog import Dialog, DialogTurn, dialog_items, make_dialog
from minivl.data.digits import (
    DIGIT_NAMES,
    DIGIT_TEMPLATES,
    Digits,
    digit_captions,
    load_digits,
    resize,
)
from minivl.data.foil import FOIL_KINDS, Foil, foil_candidates, foil_caption, foil_items
from minivl.data.instructions import (
    INSTRUCTION_KINDS,
    Instruction,
    instruction_items,
    make_instruction,
)
from minivl.data.language import NUMBER_WORDS, Description, split_words
from minivl.data.loader import DataLoader, pad_sequences, split_indices
from minivl.data.multiple_choice import (
    MC_KINDS,
    MultipleChoiceItem,
    multiple_choice_item,
    multiple_choice_items,
)
from minivl.data.nlvr import NLVR_KINDS, NLVRItem, nlvr_items
from minivl.data.refexp import REFEXP_FORMS, RefExp, refexp_items
from minivl.data.render import render, stencil
from minivl.data.retrieval import FourWay, RetrievalItem, four_way, retrieval_items
from minivl.data.shapes import (
    CLASS_NAMES,
    COLOUR_RGB,
    COLOURS,
    DEFAULT_HELD_OUT_PAIRS,
    N_CLASSES,
    RELATIONS,
    SHAPES,
    SIZES,
    Scene,
    ShapeObject,
    class_id,
    relation_holds,
    sample_scenes,
    single_object_scenes,
)
from minivl.data.splits import IID_PARTS, iid_part, iid_scenes, scene_key
from minivl.data.vqa import ANSWERS, QUESTION_TYPES, Question, VQAItem, ask, vqa_items
from minivl.data.world import ShapesWorld

__all__ = [
    # the world
    "ShapesWorld", "Scene", "ShapeObject", "sample_scenes", "single_object_scenes",
    "render", "stencil", "SHAPES", "COLOURS", "COLOUR_RGB", "SIZES", "RELATIONS",
    "N_CLASSES", "CLASS_NAMES", "DEFAULT_HELD_OUT_PAIRS", "class_id", "relation_holds",
    "IID_PARTS", "iid_part", "iid_scenes", "scene_key",
    # regions
    "box_iou", "location_features", "stack_objects", "detector_distributions",
    "class_similarity",
    # text tasks
    "Description", "NUMBER_WORDS", "split_words",
    "Caption", "CAPTION_KINDS", "CLIP_TEMPLATES", "sample_captions", "class_prompts", "holds",
    "sample_caption",
    "Foil", "FOIL_KINDS", "foil_caption", "foil_candidates", "foil_items",
    "Question", "VQAItem", "ANSWERS", "QUESTION_TYPES", "ask", "vqa_items",
    "RefExp", "REFEXP_FORMS", "refexp_items",
    "NLVRItem", "NLVR_KINDS", "nlvr_items",
    "Dialog", "DialogTurn", "make_dialog", "dialog_items",
    "MultipleChoiceItem", "MC_KINDS", "multiple_choice_item", "multiple_choice_items",
    "RetrievalItem", "FourWay", "retrieval_items", "four_way",
    "Instruction", "INSTRUCTION_KINDS", "make_instruction", "instruction_items",
    # digits
    "Digits", "DIGIT_NAMES", "DIGIT_TEMPLATES", "digit_captions", "load_digits", "resize",
    # batching
    "DataLoader", "pad_sequences", "split_indices", "random_flip", "random_shift", "compose",
]  # fmt: skip
