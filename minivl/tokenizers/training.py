"""Learning the merges: repeatedly merge the most frequent adjacent pair.

Byte-level BPE as in GPT-2 (Radford et al., 2019), after Sennrich et al.
(2016): start from the 256 byte values, count every adjacent pair inside the
pre-tokenised chunks, merge the most frequent pair into a new id
(256, 257, ...), and repeat until the vocabulary is full.

Recounting every pair after every merge costs O(text) per merge.  Two
observations make it cheap instead:

1. Only the *unique* chunks matter, each weighted by how often it occurs
   (" the" may occur 50,000 times but is one entry).
2. A merge only changes the chunks that contain the merged pair, so an index
   pair -> {chunks containing it} finds them, and only their pair counts move.

The most frequent pair comes from a lazy max-heap.  After a pair is first
created its count can only go *down* (later merges consume its occurrences,
and every pair a merge creates contains the brand-new id), so a heap entry
is never smaller than the true count; a popped entry whose count is out of
date is pushed back with the true count and the search goes on.

Ties: among pairs with the same count, the smallest pair (left id, then
right id) wins.  The rule is arbitrary but deterministic, and
``train_merges_naive`` follows the same one, so the two must agree exactly.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

from tqdm.auto import tqdm

from .merge import merge_pair

Pair = tuple[int, int]


def _pairs(ids: list[int]) -> Counter:
    return Counter(zip(ids, ids[1:]))


def train_merges(
    chunk_counts: dict[bytes, int],
    num_merges: int,
    progress: bool = False,
    on_merge: Callable[[int, Pair, int, int], None] | None = None,
) -> list[Pair]:
    """Learn up to ``num_merges`` merges from chunks weighted by their frequency.

    ``chunk_counts`` maps each unique chunk (as UTF-8 bytes) to its number of
    occurrences.  Merge ``i`` makes id ``256 + i``.  Returns the merged pairs in
    order; fewer than ``num_merges`` when no adjacent pair is left.
    ``on_merge(new_id, pair, count, rank)`` is called after each merge.
    """
    words = [list(chunk) for chunk in chunk_counts]  # token ids of each unique chunk
    freqs = list(chunk_counts.values())

    pair_counts: dict[Pair, int] = defaultdict(int)  # pair -> weighted occurrences
    where: dict[Pair, set[int]] = defaultdict(set)  # pair -> indices of chunks holding it
    for w, (word, freq) in enumerate(zip(words, freqs)):
        for pair, n in _pairs(word).items():
            pair_counts[pair] += n * freq
            where[pair].add(w)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[Pair] = []
    for rank in tqdm(range(num_merges), desc="BPE merges", disable=not progress):
        best = _pop_most_frequent(heap, pair_counts)
        if best is None:
            break
        pair, count = best
        new_id = 256 + rank
        merges.append(pair)

        created: set[Pair] = set()
        for w in where.pop(pair):
            old, new = words[w], merge_pair(words[w], pair, new_id)
            words[w] = new
            old_pairs, new_pairs = _pairs(old), _pairs(new)
            # Pairs away from the merge sites appear in both and cancel out:
            # only the neighbours of each merged pair change count.
            for p in old_pairs.keys() | new_pairs.keys():
                delta = new_pairs[p] - old_pairs[p]
                if delta == 0:
                    continue
                pair_counts[p] += delta * freqs[w]
                if pair_counts[p] == 0:
                    del pair_counts[p]
                if new_pairs[p]:
                    where[p].add(w)
                elif p in where:
                    where[p].discard(w)
                if delta > 0:
                    created.add(p)  # holds new_id: counts only ever rise at creation
        pair_counts.pop(pair, None)
        for p in created:
            heapq.heappush(heap, (-pair_counts[p], p))
        if on_merge is not None:
            on_merge(new_id, pair, count, rank)
    return merges


def _pop_most_frequent(heap: list, pair_counts: dict[Pair, int]) -> tuple[Pair, int] | None:
    """Pop the live pair with the highest count (smallest pair on ties), or None."""
    while heap:
        neg_count, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count == -neg_count:
            return pair, count
        if count > 0:  # out of date: the pair lost occurrences since it was pushed
            heapq.heappush(heap, (-count, pair))
    return None


def train_merges_naive(chunks: Iterable[bytes], num_merges: int) -> list[Pair]:
    """The textbook loop, the spec ``train_merges`` must match: recount every
    pair of every chunk occurrence after each merge.  O(text) per merge."""
    words = [list(chunk) for chunk in chunks]
    merges: list[Pair] = []
    for rank in range(num_merges):
        counts: Counter = Counter()
        for word in words:
            counts.update(zip(word, word[1:]))
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))  # most frequent, then smallest
        merges.append(pair)
        words = [merge_pair(word, pair, 256 + rank) for word in words]
    return merges
