"""Answer balancing: pick the answer first, then a question that has it.

A question generator that asks "whatever the scene suggests" leaks the
answer through the wording: "is there a circle?" is mostly "yes", "how many
small red circles?" mostly "zero". Goyal et al. (2017, VQA v2) fixed VQA by
pairing each question with an image that answers it differently; Hudson and
Manning (2019, GQA) by smoothing each question group's answer distribution.
We can do better, because we write the questions: for each scene the
generator lists every question it could ask, each with its answer and its
*group* (what the wording reveals beyond the colour and shape words, which
the scene prior treats symmetrically: the question type, which attributes
are named, any size or relation word). Then ``pick``:

1. takes a random group the scene can ask about;
2. draws an answer uniformly among those the ``Balancer`` allows for that
   group (an answer may not run ahead of the group's rarest answer by
   ``slack`` or more), before looking at the scene, and moves on to another
   group if the scene cannot give it;
3. draws the question uniformly among the group's questions with that
   answer.

Step 3 keeps the colour and shape words independent of the answer (every
colour and shape is equally likely in a scene, so a red circle is as likely
to be the present one as the absent one); step 2 keeps every group's
answers level across the dataset. A group that can almost never give some
answer (e.g. "how many shapes are there?" is never "zero") is starved: it is
asked only as often as its rarest answer comes up.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from minivl.data.language import choice


@dataclass(frozen=True)
class Candidate:
    """A question the scene could be asked: its group, its answer, and what builds it."""

    group: Hashable
    answer: Any
    payload: Any


class Balancer:
    """Running answer counts per group, kept within ``slack`` of each group's rarest answer."""

    def __init__(self, slack: int = 1):
        if slack < 1:
            raise ValueError(f"slack must be >= 1, got {slack}")
        self.slack = slack
        self.counts: dict[Hashable, Counter] = defaultdict(Counter)

    def allows(self, group: Hashable, answer, answers: Sequence) -> bool:
        """Whether ``answer`` may be given next in ``group`` (whose possible answers are ``answers``)."""
        counts = self.counts[group]
        return counts[answer] < min(counts[a] for a in answers) + self.slack

    def add(self, group: Hashable, answer) -> None:
        self.counts[group][answer] += 1


def pick(
    candidates: list[Candidate],
    answers: Sequence,
    rng: np.random.Generator,
    balancer: Balancer | None = None,
    wanted=None,
) -> Candidate | None:
    """One candidate, chosen answer-first (see the module docstring); None if none is allowed.

    ``answers`` are every answer the question type can have. Without a
    balancer the answer is uniform over those the scene can give. With
    ``wanted`` the answer is that one (in a group the balancer allows it in).
    """
    by_group: dict[Hashable, list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_group[c.group].append(c)
    groups = list(by_group)
    for g in rng.permutation(len(groups)).tolist():
        group = groups[g]
        present = {c.answer for c in by_group[group]}
        if wanted is not None:
            answer = wanted
            if answer not in present or not (balancer is None or balancer.allows(group, answer, answers)):
                continue
            if balancer is not None:
                balancer.add(group, answer)
        elif balancer is None:
            answer = choice(rng, [a for a in answers if a in present])
        else:  # drawn before looking at the scene, so that ties do not favour common answers
            answer = choice(rng, [a for a in answers if balancer.allows(group, a, answers)])
            if answer not in present:
                continue
            balancer.add(group, answer)
        return choice(rng, [c for c in by_group[group] if c.answer == answer])
    return None
