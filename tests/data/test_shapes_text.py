"""Every sentence the shapes world writes is checked against the scene by an
independent reader written here: it parses the text back (regular
expressions over the vocabulary) and recomputes the truth from the boxes and
attributes, without the library's own Description / holds / relation code."""

from __future__ import annotations

import re
from itertools import permutations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivl.data import ANSWERS, COLOURS, SHAPES, ShapesWorld, split_words

# ---------------------------------------------------------------- the reader

NUMBERS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine".split())}
NUMBERS["no"] = 0
SHAPE = {s: i for i, s in enumerate(SHAPES)} | {
    (s + "es" if s.endswith("s") else s + "s"): i for i, s in enumerate(SHAPES)
}
COLOUR = {c: i for i, c in enumerate(COLOURS)}
SIZE = {"small": 0, "little": 0, "large": 1, "big": 1}
GENERIC = {"shape", "shapes", "object", "objects"}
RELATION = {
    "to the left of": "left", "left of": "left", "to the right of": "right", "right of": "right",
    "above": "above", "over": "above", "below": "below", "under": "below",
    "bigger than": "bigger", "larger than": "bigger", "smaller than": "smaller",
}  # fmt: skip
REL = "|".join(sorted(RELATION, key=len, reverse=True))


def phrase(text):
    """'small red circle' -> {'size': 0, 'colour': 0, 'shape': 0}; unknown words fail."""
    *mods, head = text.split()
    out = {}
    if head not in GENERIC:
        out["shape"] = SHAPE[head]
    for word in mods:
        if word in SIZE:
            out["size"] = SIZE[word]
        else:
            out["colour"] = COLOUR[word]
    return out


def fits(p, obj):
    return all(getattr(obj, k) == v for k, v in p.items())


def matching(p, scene):
    return [i for i, o in enumerate(scene.objects) if fits(p, o)]


def the(p, scene):
    """The one object a definite phrase refers to (it must be unique)."""
    found = matching(p, scene)
    assert len(found) == 1, (p, found)
    return found[0]


def related(rel, a, b):
    ax1, ay1, ax2, ay2 = a.box
    bx1, by1, bx2, by2 = b.box
    return {
        "left": ax2 <= bx1, "right": bx2 <= ax1, "above": ay2 <= by1, "below": by2 <= ay1,
        "bigger": a.size > b.size, "smaller": a.size < b.size,
    }[rel]  # fmt: skip


def caption_true(text, scene):
    """Truth of a list / relation / count caption (list: phrases fit distinct objects)."""
    body = text.removesuffix(".")
    for prefix in ("an image of ", "a picture showing ", "the image shows ", "there is "):
        body = body.removeprefix(prefix)
    body = body.removesuffix(" on a black background").removesuffix(" in the image")
    m = re.fullmatch(rf"a (.+?) (?:is )?({REL}) a (.+)", body)
    if m:
        a, b = phrase(m[1]), phrase(m[3])
        rel = RELATION[m[2]]
        objs = scene.objects
        return any(
            fits(a, x) and fits(b, y) and related(rel, x, y)
            for i, x in enumerate(objs) for j, y in enumerate(objs) if i != j
        )  # fmt: skip
    parts = re.split(r", | and ", body)
    if parts[0].split()[0] in NUMBERS:  # count caption: "two circles and one square"
        return all(
            len(matching(phrase(p.split(maxsplit=1)[1]), scene)) == NUMBERS[p.split()[0]]
            for p in parts
        )
    phrases = [phrase(p.removeprefix("a ")) for p in parts]
    return any(
        all(fits(p, scene.objects[i]) for p, i in zip(phrases, chosen))
        for chosen in permutations(range(len(scene)), len(phrases))
    )


def caption_phrases(text):
    body = text.removesuffix(".")
    for prefix in ("an image of ", "a picture showing ", "the image shows "):
        body = body.removeprefix(prefix)
    body = body.removesuffix(" on a black background")
    return [phrase(p.removeprefix("a ")) for p in re.split(r", | and ", body)]


def answer_question(q, scene):
    """The answer to a VQA question, recomputed."""
    patterns = [
        (r"how many (.+) are (?:there|in the image)\?", lambda m: list(NUMBERS)[len(matching(phrase(m[1]), scene))]),
        (r"(?:what colour is|what is the colour of) the (.+)\?", lambda m: COLOURS[scene.objects[the(phrase(m[1]), scene)].colour]),
        (r"what shape is the (.+)\?", lambda m: SHAPES[scene.objects[the(phrase(m[1]), scene)].shape]),
        (r"(?:what size is the (.+)|is the (.+) small or large)\?", lambda m: ("small", "large")[scene.objects[the(phrase(m[1] or m[2]), scene)].size]),
        (r"(?:is there a|are there any) (.+)\?", lambda m: "yes" if matching(phrase(m[1]), scene) else "no"),
        (rf"is the (.+?) ({REL}) the (.+)\?", lambda m: "yes" if related(RELATION[m[2]], scene.objects[the(phrase(m[1]), scene)], scene.objects[the(phrase(m[3]), scene)]) else "no"),
    ]  # fmt: skip
    for pattern, answer in patterns:
        m = re.fullmatch(pattern, q)
        if m:
            return answer(m)
    raise AssertionError(f"unreadable question {q!r}")


def referent(expression, scene):
    """The one object a referring expression picks out (asserting it is unique)."""
    body = expression.removeprefix("the ")
    m = re.fullmatch(rf"(.+?) ({REL}) the (.+)", body)
    if m:
        landmark = the(phrase(m[3]), scene)
        hits = [
            i for i in matching(phrase(m[1]), scene)
            if i != landmark and related(RELATION[m[2]], scene.objects[i], scene.objects[landmark])
        ]  # fmt: skip
        assert len(hits) == 1, (expression, hits)
        return hits[0]
    word, _, rest = body.partition(" ")
    if word in ("leftmost", "rightmost", "topmost", "bottommost"):
        axis = 0 if word in ("leftmost", "rightmost") else 1
        sign = 1 if word in ("leftmost", "topmost") else -1
        hits = matching(phrase(rest), scene)
        keys = sorted((sign * scene.objects[i].centre[axis], i) for i in hits)
        assert len(keys) >= 2 and keys[0][0] < keys[1][0], (expression, keys)
        return keys[0][1]
    return the(phrase(body), scene)


def nlvr_true(statement, left, right):
    side = {"left": left, "right": right}

    def count(p, scene):
        return len(matching(phrase(p), scene))

    def clause(text):
        if m := re.fullmatch(r"the (\w+) image has twice as many (.+) as the (\w+) image", text):
            a, b = count(m[2], side[m[1]]), count(m[2], side[m[3]])
            return b >= 1 and a == 2 * b
        if m := re.fullmatch(r"the (\w+) image has more (.+) than the (\w+) image", text):
            return count(m[2], side[m[1]]) > count(m[2], side[m[3]])
        if m := re.fullmatch(r"the (\w+) image has exactly (\w+) (.+)", text):
            return count(m[3], side[m[1]]) == NUMBERS[m[2]]
        if m := re.fullmatch(r"both images contain a (.+)", text):
            return count(m[1], left) >= 1 and count(m[1], right) >= 1
        if m := re.fullmatch(r"at least (\w+) (\w+) in the (\w+) image (?:is|are) (\w+)", text):
            p = phrase(f"{m[4]} {m[2]}")
            return len(matching(p, side[m[3]])) >= NUMBERS[m[1]]
        raise AssertionError(f"unreadable clause {text!r}")

    return all(clause(c) for c in statement.removesuffix(".").split(", and "))


# ---------------------------------------------------------------- fixtures

seeds = st.integers(0, 2**32 - 1)


def make(seed, n=12, max_objects=4, size=32):
    world = ShapesWorld(image_size=size, max_objects=max_objects, seed=seed)
    return world, world.scenes(n)


# ---------------------------------------------------------------- tests


@settings(deadline=None, max_examples=15)
@given(seed=seeds)
def test_every_caption_is_true_of_its_scene(seed):
    world, scenes = make(seed)
    for kind in ("list", "relation", "count"):
        for text, scene in zip(world.captions(scenes, kinds=(kind,)), scenes):
            assert caption_true(text, scene), text


@settings(deadline=None, max_examples=15)
@given(seed=seeds)
def test_every_vqa_answer_is_right_and_scores_follow_vqa(seed):
    world, scenes = make(seed)
    items = world.vqa(scenes, per_scene=3)
    assert len(items) == 3 * len(scenes)
    for item in items:
        assert answer_question(item.question, scenes[item.scene_index]) == item.answer, item
        assert ANSWERS[item.answer_id] == item.answer
        assert item.scores.shape == (len(ANSWERS),) and item.scores[item.answer_id] == 1
        votes = np.round(item.scores * 3)  # min(votes / 3, 1): at most 3 annotators disagree
        assert ((item.scores == np.minimum(votes / 3, 1)) & (votes.sum() <= 10)).all()


def test_vqa_covers_every_question_type():
    world, scenes = make(0, n=200)
    assert {i.qtype for i in world.vqa(scenes)} == {
        "count",
        "colour",
        "shape",
        "size",
        "exist",
        "relation",
    }


@settings(deadline=None, max_examples=15)
@given(seed=seeds)
def test_foil_is_false_original_true_and_position_points_at_the_swap(seed):
    world, scenes = make(seed)
    for foil in world.foils(scenes):
        scene = scenes[foil.scene_index]
        assert caption_true(foil.original, scene), foil.original
        assert not caption_true(foil.caption, scene), foil.caption
        if foil.kind != "relation":  # a list caption: the changed phrase fits nothing at all
            if not re.search(REL, foil.caption):
                assert any(not matching(p, scene) for p in caption_phrases(foil.caption))
        before, after = split_words(foil.original), split_words(foil.caption)
        assert len(before) == len(after)
        assert [i for i, (a, b) in enumerate(zip(before, after)) if a != b] == [foil.position]
        assert (before[foil.position], after[foil.position]) == (foil.original_word, foil.foil_word)


@settings(deadline=None, max_examples=15)
@given(seed=seeds)
def test_referring_expressions_pick_out_exactly_their_target(seed):
    world, scenes = make(seed)
    items = world.refexps(scenes)
    assert len(items) == len(scenes)  # without overlap every scene has a nameable object
    for item in items:
        scene = scenes[item.scene_index]
        assert referent(item.text, scene) == item.target, item
        assert item.box == scene.objects[item.target].box


def test_referring_expressions_use_every_form():
    world, scenes = make(1, n=150)
    assert {r.form for r in world.refexps(scenes)} == {"attribute", "superlative", "relation"}


@settings(deadline=None, max_examples=10)
@given(seed=seeds)
def test_nlvr_labels_are_recomputed_and_balanced(seed):
    world, scenes = make(seed, n=40)
    items = world.nlvr(scenes, 40)
    for item in items:
        assert item.left != item.right
        assert nlvr_true(item.statement, scenes[item.left], scenes[item.right]) == item.label, item
    assert 0.3 <= np.mean([i.label for i in items]) <= 0.7


@settings(deadline=None, max_examples=10)
@given(seed=seeds)
def test_dialog_pronouns_refer_to_the_previous_turns_object_and_answers_are_right(seed):
    world, scenes = make(seed, n=40)
    for dialog in world.dialogs(scenes, n_turns=6):
        scene = scenes[dialog.scene_index]
        assert caption_true(dialog.caption, scene)
        focus = -1  # the object the previous turn was about
        for turn in dialog.turns:
            q = turn.question
            if re.search(r"\bit\b", q):  # "it" is the previous turn's object
                assert focus >= 0 and turn.referent == focus, (q, focus)
                obj = scene.objects[focus]
                if m := re.fullmatch(rf"is it ({REL}) the (.+)\?", q):
                    other = scene.objects[the(phrase(m[2]), scene)]
                    expected = "yes" if related(RELATION[m[1]], obj, other) else "no"
                elif m := re.fullmatch(r"is it (\w+)\?", q):
                    expected = "yes" if fits(phrase(f"{m[1]} object"), obj) else "no"
                elif q == "what colour is it?":
                    expected = COLOURS[obj.colour]
                else:
                    assert q == "what size is it?"
                    expected = ("small", "large")[obj.size]
            elif m := re.fullmatch(rf"is there anything ({REL}) the (.+)\?", q):
                landmark = the(phrase(m[2]), scene)
                hits = [
                    i for i, o in enumerate(scene.objects)
                    if i != landmark and related(RELATION[m[1]], o, scene.objects[landmark])
                ]  # fmt: skip
                assert len(hits) <= 1  # "it" can only mean one object
                expected = "yes" if hits else "no"
                assert turn.referent == (hits[0] if hits else -1)
            else:  # a question naming one object is about it
                m = re.fullmatch(r"what (colour|size) is the (.+)\?", q)
                assert turn.referent == the(phrase(m[2]), scene)
                expected = answer_question(q, scene)
            assert turn.answer == expected, (q, turn.answer, expected)
            focus = turn.referent


def test_dialog_it_is_not_the_object_mentioned_last():
    """The rule for "it" is not "the last object mentioned": after "is it left of the
    square?" (or "is there anything left of the square?"), "it" is not the square."""
    world, scenes = make(0, n=300)
    mentioned_last_is_it, not_it = 0, 0
    for dialog in world.dialogs(scenes, n_turns=6):
        scene = scenes[dialog.scene_index]
        for before, turn in zip(dialog.turns, dialog.turns[1:]):
            if re.search(r"\bit\b", turn.question):
                named = before.question.removesuffix("?").rsplit("the ", 1)
                last = the(phrase(named[1]), scene) if len(named) == 2 else before.referent
                if last == turn.referent:
                    mentioned_last_is_it += 1
                else:
                    not_it += 1
    total = mentioned_last_is_it + not_it
    assert total > 100 and min(mentioned_last_is_it, not_it) > 0.1 * total


def rationale_true(rationale, scene):
    """A count rationale lists every object; a relation rationale says which object stands
    in the relation and lists the objects left over, which do not."""
    m = re.fullmatch(rf"a (.+?) is ({REL}) the (.+?), and (.+) (?:is|are) not\.", rationale)
    if not m:
        return caption_true(rationale, scene) and len(caption_phrases(rationale)) == len(scene)
    landmark = the(phrase(m[3]), scene)
    hits = [
        i for i, o in enumerate(scene.objects)
        if i != landmark and related(RELATION[m[2]], o, scene.objects[landmark])
    ]  # fmt: skip
    if len(hits) != 1 or not fits(phrase(m[1]), scene.objects[hits[0]]):
        return False
    rest = [o for i, o in enumerate(scene.objects) if i not in (landmark, hits[0])]
    said = [phrase(p.removeprefix("a ")) for p in re.split(r", | and ", m[4])]
    return len(said) == len(rest) and any(
        all(fits(p, rest[i]) for p, i in zip(said, chosen))
        for chosen in permutations(range(len(rest)))
    )


@settings(deadline=None, max_examples=10)
@given(seed=seeds)
def test_multiple_choice_has_one_right_answer_and_one_true_rationale(seed):
    world, scenes = make(seed)
    for item in world.multiple_choice(scenes):
        scene = scenes[item.scene_index]
        assert len(item.answers) == len(set(item.answers)) == 4
        assert len(item.rationales) == len(set(item.rationales)) == 4
        if item.kind == "count":
            n = NUMBERS[answer_question(item.question, scene)]
            said = [
                NUMBERS[re.fullmatch(r"there (?:is|are) (\w+) .+\.", a)[1]] for a in item.answers
            ]
            assert [i for i, m in enumerate(said) if m == n] == [item.answer_label]
            # every rationale agrees with the question and the answer: it lists n such objects
            counted = phrase(re.fullmatch(r"how many (.+) are (?:there|in the image)\?", item.question)[1])
            for r in item.rationales:
                listed = caption_phrases(r)
                assert len(listed) == len(scene)
                assert sum(all(p.get(k) == v for k, v in counted.items()) for p in listed) == n
        else:
            m = re.fullmatch(rf"what is ({REL}) the (.+)\?", item.question)
            landmark = scene.objects[the(phrase(m[2]), scene)]
            hits = [
                o
                for o in scene.objects
                if o is not landmark and related(RELATION[m[1]], o, landmark)
            ]
            assert len(hits) == 1
            right = [
                any(fits(phrase(a.removeprefix("a ").removesuffix(".")), o) for o in hits)
                for a in item.answers
            ]
            assert [i for i, r in enumerate(right) if r] == [item.answer_label]
        truth = [rationale_true(r, scene) for r in item.rationales]
        assert [i for i, t in enumerate(truth) if t] == [item.rationale_label], item.rationales


@settings(deadline=None, max_examples=10)
@given(seed=seeds)
def test_retrieval_positives_describe_and_negatives_do_not(seed):
    world, scenes = make(seed)

    def describes(text, scene):
        return len(caption_phrases(text)) == len(scene) and caption_true(text, scene)

    for item in world.retrieval(scenes, n_hard=3):
        scene = scenes[item.scene_index]
        assert describes(item.caption, scene)
        assert len(item.hard_negatives) == 3
        for negative in item.hard_negatives:
            assert not caption_true(negative, scene)
            changed = [a != b for a, b in zip(split_words(item.caption), split_words(negative))]
            assert sum(changed) == 1
    for quad in world.four_way(scenes):
        ok = [describes(c, scenes[i]) for i, c in zip(quad.image_indices, quad.captions)]
        assert [i for i, good in enumerate(ok) if good] == [quad.label]


@settings(deadline=None, max_examples=10)
@given(seed=seeds)
def test_instruction_responses_agree_with_the_scene(seed):
    world, scenes = make(seed)
    for kind in ("conversation", "detail", "reasoning"):
        for item in world.instructions(scenes, kinds=(kind,)):
            scene = scenes[item.scene_index]
            assert item.kind == kind and item.turns
            for question, response in item.turns:
                if kind == "conversation":
                    answer = answer_question(question[0].lower() + question[1:], scene)
                    words = response.lower().removesuffix(".").replace(",", "").split()
                    assert answer in words or (answer == "zero" and "no" in words), (
                        question,
                        response,
                    )
                elif kind == "detail":
                    m = re.match(r"The image shows (\w+) shapes? on a black background\.", response)
                    assert NUMBERS[m[1]] == len(scene)
                    named = re.findall(r"(?:^|\. )A (\w+ \w+ \w+) is (?:in|on|at) the", response)
                    assert sorted(named) == sorted(o.name for o in scene.objects)
                elif question.startswith("If the"):
                    m = re.fullmatch(
                        r"If the (.+) were taken away, how many shapes would be left\?", question
                    )
                    the(phrase(m[1]), scene)
                    n = re.search(r"leaves (\w+) shapes?", response)[1]
                    assert NUMBERS[n] == len(scene) - 1
                elif question.startswith("Do all"):
                    same = len({o.colour for o in scene.objects}) == 1
                    assert response.startswith("Yes" if same else "No")
                elif question.startswith("Which shape is closest"):
                    edge = re.search(r"the (\w+) edge", question)[1]
                    b, size = scene.boxes, scene.image_size
                    gap = {
                        "left": b[:, 0],
                        "right": size - b[:, 2],
                        "top": b[:, 1],
                        "bottom": size - b[:, 3],
                    }[edge]
                    nearest = scene.objects[int(np.argmin(gap))]
                    assert response.endswith(f"its colour is {COLOURS[nearest.colour]}.")
                else:
                    counts = np.bincount([o.colour for o in scene.objects], minlength=len(COLOURS))
                    top = COLOURS[counts.argmax()]
                    assert response.lower().startswith(
                        f"{top} appears most often: {list(NUMBERS)[counts.max()]} of"
                    )


def test_class_prompts_and_bad_kinds():
    world = ShapesWorld(seed=0)
    prompts = world.class_prompts("a photo of a {}.")
    assert len(prompts) == len(SHAPES) * len(COLOURS) and prompts[0] == "a photo of a red circle."
    scenes = world.scenes(4)
    with pytest.raises(ValueError, match="caption kind"):
        world.captions(scenes, kinds=("poem",))
    with pytest.raises(ValueError, match="form"):
        world.refexps(scenes, forms=("pointing",))
    with pytest.raises(ValueError, match="NLVR"):
        world.nlvr(scenes, 3, kinds=("thrice",))
    with pytest.raises(ValueError, match="at least 2"):
        world.nlvr(scenes[:1], 3)
    with pytest.raises(ValueError, match="template"):
        world.class_prompts("no slot")
