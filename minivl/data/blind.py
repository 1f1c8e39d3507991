"""Can it be answered blind? Text-only baselines for every shapes-world task.

A vision-and-language benchmark is only worth training on if the image
decides the answer. VQA v1 was not: "what sport is ..." is "tennis" often
enough that a text-only model did well (Goyal et al., 2017, "Making the V in
VQA matter"); VCR's answers could be picked from the text alone until its
authors matched them adversarially (Zellers et al., 2019). Here every task is
scored by cheap models that read only the text:

- ``majority``: the most common answer seen in training for exactly this
  question text (the commonest answer overall for an unseen text);
- ``bow``: logistic regression over binary bags of words and word bigrams;
- ``options`` (multiple choice): logistic regression scoring each option on
  its own words, the words it shares with the question, how close it is to
  the other options (the "centroid" of one-word edits), duplicates among
  the options and the rank of a number among the options' numbers; the
  highest-scoring option is the prediction.

Each is fitted on the items of one part's scenes and scored on another's
(parts split by image, i.i.d. over scenes).
``chance`` is what a reader gets who knows the question type but not the
image (one over the number of possible answers, or options). A task passes
when no baseline beats chance by more than a few points
(``tests/data/test_blind_baselines.py``).

    python -m minivl.data.blind --out benchmarks/results/blind_baselines.json

Why one file of ~380 lines: the text view of each of the nine tasks and the
three baselines that read it are meant to be checked side by side (what the
baseline may see is exactly what the view hands it); each piece is a short
function.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.feature_extraction import DictVectorizer
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from minivl.data.language import NUMBER_WORDS, split_words
from minivl.data.shapes import COLOURS, SHAPES, SIZES

# ---------------------------------------------------------------- task views


@dataclass
class Labelled:
    """Texts with a label each; ``groups`` (question type, statement kind) for per-group scores;
    ``chance`` per item: one over the number of answers its group allows."""

    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    chance: list[float] = field(default_factory=list)

    def add(self, text: str, label, group: str, chance: float) -> None:
        self.texts.append(text)
        self.labels.append(str(label))
        self.groups.append(group)
        self.chance.append(chance)


@dataclass
class Choices:
    """Multiple-choice items: a context, its options, the index of the right one."""

    contexts: list[str] = field(default_factory=list)
    options: list[tuple[str, ...]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def add(self, context: str, options, label: int, group: str) -> None:
        self.contexts.append(context)
        self.options.append(tuple(options))
        self.labels.append(int(label))
        self.groups.append(group)


def _answer_set_size(answer: str, n_counts: int) -> int:
    for vocabulary in (("yes", "no"), COLOURS, SHAPES, SIZES):
        if answer in vocabulary:
            return len(vocabulary)
    if answer in NUMBER_WORDS:
        return n_counts
    raise ValueError(f"answer {answer!r} is in no answer set")


def _vqa(world, scenes, rng, n_counts):
    view = Labelled()
    for item in world.vqa(scenes, rng=rng):
        view.add(item.question, item.answer, item.qtype, 1 / _answer_set_size(item.answer, n_counts))
    return view


def _nlvr(world, scenes, rng, n_counts, order=False):
    view = Labelled()
    for k, item in enumerate(world.nlvr(scenes, len(scenes), rng=rng)):
        text = f"item {k % 2}" if order else item.statement  # does the position give it away?
        view.add(text, item.label, item.kind, 0.5)
    return view


def _mc(world, scenes, rng, n_counts, rationale=False):
    view = Choices()
    for item in world.multiple_choice(scenes, rng=rng):
        if rationale:  # QA->R: the question and the right answer are given
            context = f"{item.question} {item.answers[item.answer_label]}"
            view.add(context, item.rationales, item.rationale_label, item.kind)
        else:
            view.add(item.question, item.answers, item.answer_label, item.kind)
    return view


def _dialog(world, scenes, rng, n_counts):
    view = Labelled()
    for d in world.dialogs(scenes, rng=rng):
        history = [d.caption]
        for turn in d.turns:
            # the caption, the earlier turns and the question, the question's words marked apart
            text = " ".join(history) + " | " + " ".join("q_" + w for w in split_words(turn.question))
            group = "it" if "it" in split_words(turn.question) else "named"
            view.add(text, turn.answer, group, 1 / _answer_set_size(turn.answer, n_counts))
            history += [turn.question, turn.answer]
    return view


def _foil(world, scenes, rng, n_counts):
    view = Labelled()  # is this caption the true one or its foil?
    for item in world.foils(scenes, rng=rng):
        view.add(item.original, "true", item.kind, 0.5)
        view.add(item.caption, "foil", item.kind, 0.5)
    return view


def _refexp(world, scenes, rng, n_counts):
    view = Labelled()  # which object (index in the scene) is meant?
    for item in world.refexps(scenes, rng=rng):
        view.add(item.text, item.target, item.form, 1 / len(scenes[item.scene_index]))
    return view


def _retrieval(world, scenes, rng, n_counts):
    view = Labelled()  # the describing caption or a hard negative?
    for item in world.retrieval(scenes, rng=rng, n_hard=1):
        if item.hard_negatives:
            view.add(item.caption, "positive", "list", 0.5)
            view.add(item.hard_negatives[0], "negative", "list", 0.5)
    return view


def _four_way(world, scenes, rng, n_counts):
    """ViLBERT's four candidates by their captions alone. The true caption is there twice
    (the true pair and "another image, this caption"), so a reader without the images can
    reach, and should not pass, 1/2: that is this view's chance."""
    view = Choices()
    for item in world.four_way(scenes, rng=rng):
        view.add("", item.captions, item.label, "four_way")
    return view


TASKS = {
    "vqa": _vqa,
    "nlvr": _nlvr,
    "nlvr_order": lambda *a: _nlvr(*a, order=True),
    "mc_answer": _mc,
    "mc_rationale": lambda *a: _mc(*a, rationale=True),
    "dialog": _dialog,
    "foil": _foil,
    "refexp": _refexp,
    "retrieval": _retrieval,
    "four_way": _four_way,
}
CHANCE_OVERRIDE = {"four_way": 0.5}


def task_view(task: str, world, scenes, rng) -> Labelled | Choices:
    """What a blind reader sees of ``task`` made from ``scenes`` (with ``world``'s generators)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {tuple(TASKS)}")
    return TASKS[task](world, scenes, rng, world.max_objects + 1)  # counts 0 .. max_objects


# ---------------------------------------------------------------- baselines


def majority_predictions(train: Labelled, test: Labelled) -> list[str]:
    """The commonest training answer for each test text (the commonest overall if unseen)."""
    by_text = defaultdict(Counter)
    for text, label in zip(train.texts, train.labels):
        by_text[text][label] += 1
    overall = Counter(train.labels).most_common(1)[0][0]
    return [by_text[t].most_common(1)[0][0] if t in by_text else overall for t in test.texts]


def _bag(ngrams=(1, 2)) -> CountVectorizer:
    return CountVectorizer(
        tokenizer=split_words, token_pattern=None, lowercase=False, ngram_range=ngrams, binary=True
    )


def bow_predictions(train: Labelled, test: Labelled, ngrams=(1, 2)) -> list[str]:
    """Logistic regression over binary bags of words (and bigrams) of the text."""
    if len(set(train.labels)) < 2:
        return [train.labels[0]] * len(test.texts)
    vectorizer = _bag(ngrams)
    x_train = vectorizer.fit_transform(train.texts)
    model = LogisticRegression(max_iter=2000, C=1.0).fit(x_train, train.labels)
    return model.predict(vectorizer.transform(test.texts)).tolist()


def _words(text: str) -> list[str]:
    return [w for w in split_words(text) if w not in ".,?"]


def _edit_distance(a: list[str], b: list[str]) -> int:
    """Word-level Levenshtein distance."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def option_features(context: str, options: tuple[str, ...]) -> list[dict[str, float]]:
    """One feature dict per option (see the module docstring, ``options``)."""
    words = [_words(o) for o in options]
    context_words = set(_words(context))
    numbers = [next((NUMBER_WORDS.index(w) for w in ws if w in NUMBER_WORDS), None) for ws in words]
    out = []
    for k, ws in enumerate(words):
        f = {f"w:{w}": 1.0 for w in ws}
        f |= {f"b:{a}_{b}": 1.0 for a, b in zip(ws, ws[1:])}
        f |= {f"shared:{w}": 1.0 for w in set(ws) & context_words}
        f["n_shared"] = len(set(ws) & context_words)
        distances = [_edit_distance(ws, other) for j, other in enumerate(words) if j != k]
        f["mean_distance"] = float(np.mean(distances))
        f["n_at_distance_1"] = sum(d == 1 for d in distances)
        f["n_duplicates"] = sum(d == 0 for d in distances)
        if numbers[k] is not None:
            others = [n for j, n in enumerate(numbers) if j != k and n is not None]
            f[f"number_rank:{sum(n < numbers[k] for n in others)}"] = 1.0
            f["number_is_median"] = float(
                bool(others) and min(others) < numbers[k] < max(others)
            )
        out.append(f)
    return out


def options_predictions(train: Choices, test: Choices) -> list[int]:
    """Score every option with a logistic regression on ``option_features``; argmax per item."""
    vectorizer = DictVectorizer()
    rows, targets = [], []
    for context, options, label in zip(train.contexts, train.options, train.labels):
        for k, f in enumerate(option_features(context, options)):
            rows.append(f)
            targets.append(int(k == label))
    model = LogisticRegression(max_iter=3000, C=1.0).fit(vectorizer.fit_transform(rows), targets)
    predictions = []
    for context, options in zip(test.contexts, test.options):
        scores = model.decision_function(vectorizer.transform(option_features(context, options)))
        predictions.append(int(np.argmax(scores)))
    return predictions


def _choices_as_labelled(view: Choices) -> Labelled:
    """A choice item as one text (context + every option); the label is the right option's index."""
    out = Labelled()
    for context, options, label, group in zip(view.contexts, view.options, view.labels, view.groups):
        text = context + " | " + " | ".join(f"{k}: {o}" for k, o in enumerate(options))
        out.add(text, label, group, 1 / len(options))
    return out


def _accuracy(predictions, labels, groups) -> dict[str, float]:
    hits = np.array([p == y for p, y in zip(predictions, labels)])
    scores = {"all": float(hits.mean())}
    for g in sorted(set(groups)):
        scores[g] = float(hits[np.array(groups) == g].mean())
    return scores


def _chance(view, task=None) -> dict[str, float]:
    if task in CHANCE_OVERRIDE:
        chance = [CHANCE_OVERRIDE[task]] * len(view.labels)
    elif isinstance(view, Choices):
        chance = [1 / len(o) for o in view.options]
    else:
        chance = view.chance
    chance, groups = np.array(chance), np.array(view.groups)
    return {"all": float(chance.mean())} | {
        g: float(chance[groups == g].mean()) for g in sorted(set(view.groups))
    }


def score_task(train, test, task=None) -> dict[str, dict[str, float]]:
    """Chance and every baseline's accuracy (overall and per group) on one task."""
    out = {"chance": _chance(test, task), "n_test": {"all": len(test.labels)}}
    if isinstance(train, Choices):
        out["options"] = _accuracy(options_predictions(train, test), test.labels, test.groups)
        train, test = _choices_as_labelled(train), _choices_as_labelled(test)
        test.labels = [str(y) for y in test.labels]
    out["majority"] = _accuracy(majority_predictions(train, test), test.labels, test.groups)
    out["bow"] = _accuracy(bow_predictions(train, test), test.labels, test.groups)
    return out


def blind_views(task: str, n_scenes: int = 3000, seed: int = 0, max_objects: int = 3):
    """(train view, test view) of ``task``: ``n_scenes`` scenes of the "train" part and as
    many of the "test" part, split by image (``splits.py``, ``key="scene"``): i.i.d. over
    scenes, so a text seen in training recurs in testing as often as chance makes it
    (which the majority baseline needs), and no shift between the parts' objects can hide
    a shortcut or fake one."""
    from minivl.data.world import ShapesWorld

    world = ShapesWorld(image_size=32, max_objects=max_objects, seed=seed)
    draw = {"key": "scene"}
    train_scenes = world.iid_scenes(n_scenes, "train", rng=np.random.default_rng([seed, 1]), **draw)
    test_scenes = world.iid_scenes(n_scenes, "test", rng=np.random.default_rng([seed, 2]), **draw)
    return (
        task_view(task, world, train_scenes, np.random.default_rng([seed, 3])),
        task_view(task, world, test_scenes, np.random.default_rng([seed, 4])),
    )


def blind_report(n_scenes: int = 3000, seed: int = 0, tasks=tuple(TASKS)) -> dict:
    """Every task's blind scores: fitted on one part's scenes, scored on another's."""
    return {task: score_task(*blind_views(task, n_scenes, seed), task=task) for task in tasks}


RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "blind_baselines.json"


def results_table(path=RESULTS) -> str:
    """The best blind accuracy per task, before and after the generators were rebuilt,
    beside chance: a text table of the stored results."""
    stored = json.loads(Path(path).read_text())

    def best(scores):
        return max(v["all"] for k, v in scores.items() if k not in ("chance", "n_test"))

    lines = [
        "| task | chance before | best blind before | chance after | best blind after |",
        "|---|---|---|---|---|",
    ]
    for task, after in stored["after"]["tasks"].items():
        before = stored.get("before", {}).get("tasks", {}).get(task)
        was = f"{before['chance']['all']:.3f} | {best(before):.3f}" if before else "- | -"
        lines.append(f"| {task} | {was} | {after['chance']['all']:.3f} | {best(after):.3f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="write the scores here as JSON")
    parser.add_argument("--scenes", type=int, default=3000, help="scenes per split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default="after", help="key to store the scores under")
    args = parser.parse_args(argv)
    report = blind_report(args.scenes, args.seed)
    for task, scores in report.items():
        blind = {k: v["all"] for k, v in scores.items() if k not in ("chance", "n_test")}
        print(f"{task:>13}: chance {scores['chance']['all']:.3f}  n {scores['n_test']['all']:5}  "
              + "  ".join(f"{k} {v:.3f}" for k, v in blind.items()))
    if args.out:
        try:
            with open(args.out) as f:
                stored = json.load(f)
        except FileNotFoundError:
            stored = {}
        stored[args.label] = stored.get(args.label, {}) | {
            "scenes_per_split": args.scenes, "seed": args.seed, "tasks": report
        }
        with open(args.out, "w") as f:
            json.dump(stored, f, indent=1, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
