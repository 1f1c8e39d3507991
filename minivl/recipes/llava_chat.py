"""``minivl llava chat``: a multi-turn conversation about one picture with a
trained LLaVA, the answer streamed token by token (lecture S29, S37).

The conversation lives in the language model's key/value caches: each turn
feeds only its new tokens (``\\nUSER: ...\\nASSISTANT:``), the answer is
decoded greedily one token at a time (``LLaVA.stream``) and its end-of-turn
token goes into the caches too. The new tokens of a turn are read off the
formatted conversation so far (``minivl/data/llava_format.py``), so a chat
sees exactly the token sequence training did. ``/reset`` forgets the
conversation, ``/quit`` ends it; when the context (``max_len`` tokens) is
full the chat says so and starts again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from minivl.checkpoint import load_checkpoint
from minivl.data.llava_format import END, format_conversation
from minivl.models.llava import LLaVA
from minivl.models.vision import preprocess
from minivl.tensor import no_grad
from minivl.tokenizers import BPETokenizer


def read_image(path, size) -> np.ndarray:
    """A PNG as uint8 ``(size, size, 3)``, or a ValueError saying what is wrong with it."""
    import matplotlib.image as mpimg

    path = Path(path)
    if not path.exists():
        raise ValueError(f"--image {path}: no such file")
    try:
        img = mpimg.imread(path)
    except Exception as e:  # noqa: BLE001 - any reader failure means "not an image we can read"
        raise ValueError(f"--image {path}: not a readable PNG ({e})") from None
    if img.dtype.kind == "f":
        img = np.round(img * 255).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if img.shape != (size, size, 3):
        raise ValueError(f"--image {path}: the model reads {size} x {size} RGB pictures, "
                         f"this one has shape {img.shape}")
    return img


class ChatSession:
    """One picture, one conversation; ``ask`` yields the answer's pieces as they come."""

    def __init__(self, model: LLaVA, tokenizer: BPETokenizer, image: np.ndarray, max_answer=60):
        self.model, self.tokenizer, self.max_answer = model, tokenizer, max_answer
        self.features = model.image_features(preprocess(image[None]))  # (1, N, Dv)
        self.stop = tokenizer.special_tokens[END]
        self.reset()

    def reset(self):
        self.turns, self.caches, self.ids = [], None, []  # ids: every token the caches hold

    def _new_ids(self, question):
        """The tokens this turn adds: the formatted conversation past its earlier turns."""
        n, where = self.model.config.num_image_tokens, self.model.config.image_position
        fmt = lambda turns: format_conversation(self.tokenizer, turns, n, image_position=where).ids
        before = len(fmt(self.turns)) if self.turns else 0
        return fmt(self.turns + [(question, None)])[before:]

    def ask(self, question: str):
        """Stream the answer to ``question`` (strings, one per token).

        An answer is cut at ``max_answer`` tokens; a cut answer gets its
        end-of-turn token all the same, so the conversation can go on.
        """
        new = self._new_ids(question)
        if len(self.ids) + len(new) + 8 > self.model.config.max_len:
            self.reset()
            yield "(the context is full: the conversation starts again) "
            new = self._new_ids(question)
        first = self.caches is None
        self.caches = self.model.new_caches() if first else self.caches
        self.ids += new.tolist()
        room = min(self.max_answer, self.model.config.max_len - len(self.ids) - 1)
        answer, stopped = [], False
        for token in self.model.stream(new[None], self.features if first else None, self.caches,
                                       max_new_tokens=room, stop_id=self.stop):
            t = int(token[0])
            if t == self.stop:  # the stream feeds it into the caches, then ends
                stopped = True
                continue
            answer.append(t)
            yield self.tokenizer.decode([t])
        if not stopped:  # cut: close the turn by hand
            with no_grad():
                self.model.lm(np.array([[self.stop]]), caches=self.caches)
        self.ids += answer + [self.stop]
        self.turns.append((question, self.tokenizer.decode(answer).strip()))

    def run(self, stdin, stdout):
        """The read-answer loop over text streams (a terminal, or a script in a test)."""
        stdout.write("Ask about the picture (/reset forgets the conversation, /quit ends).\n")
        for line in stdin:
            line = line.strip()
            if not line:
                continue
            if line == "/quit":
                break
            if line == "/reset":
                self.reset()
                stdout.write("(conversation reset)\n")
                continue
            stdout.write(f"USER: {line}\nASSISTANT:")
            for piece in self.ask(line):
                stdout.write(piece)
                stdout.flush()
            stdout.write("\n")
        return self


def chat_session(checkpoint, image=None, scene_seed=None, show=None) -> ChatSession:
    """A session over a checkpoint written by ``minivl llava train`` and one picture."""
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise ValueError(f"--checkpoint {checkpoint}: no such file (train with 'minivl llava train')")
    model = load_checkpoint(LLaVA, checkpoint)
    tok_path = checkpoint.with_name("tokenizer.json")
    if not tok_path.exists():
        raise ValueError(f"{tok_path}: the tokenizer saved beside the checkpoint is missing")
    tokenizer = BPETokenizer.load(tok_path)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(f"{tok_path} has {tokenizer.vocab_size} ids but {checkpoint} was trained "
                         f"with {model.config.vocab_size}: they do not belong together")
    for name in ("<image>", END):
        if name not in tokenizer.special_tokens:
            raise ValueError(f"{tok_path} has no {name} token: not a LLaVA tokenizer")
    if tokenizer.special_tokens["<image>"] != model.config.image_token_id:
        raise ValueError(f"{tok_path}'s <image> id differs from the checkpoint's: they do not belong together")
    if image is not None:
        picture = read_image(image, model.config.image_size)
    else:
        from minivl.data.llava_data import llava_scenes

        scenes, pictures = llava_scenes(1, 10_000 + int(scene_seed))
        picture = pictures[0]
        if show:
            import matplotlib.pyplot as plt

            plt.imsave(show, picture)
            print(f"scene written to {show}")
        print("the scene: " + ", ".join(o.name for o in scenes[0].objects))
    return ChatSession(model, tokenizer, picture)
