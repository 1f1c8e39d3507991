"""The one operation BPE is made of: replace a pair of ids by a new id.

Training (Sennrich et al., 2016) uses it to apply the merge it just learned;
encoding uses it to replay the learned merges, earliest first.
"""

from __future__ import annotations

_NOT_A_MERGE = float("inf")


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, left to right.

    Occurrences are taken greedily from the left, so a run "a a a" with pair
    (a, a) becomes "X a", never "a X": the rule training and encoding share.
    """
    first, second = pair
    merged = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == first and ids[i + 1] == second:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def apply_merges(ids: list[int], merges: dict[tuple[int, int], int]) -> list[int]:
    """Encode one chunk: apply the learned merge with the lowest rank, repeatedly.

    ``merges`` maps a pair to the id it merges into; merged ids grow with the
    order in which training learned them, so the smallest id is the earliest
    merge.  Replaying them in that order reproduces the segmentation training
    would have produced for this chunk.
    """
    while len(ids) >= 2:
        # The earliest-learned merge among the adjacent pairs present.
        pair = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, _NOT_A_MERGE))
        if pair not in merges:
            break
        ids = merge_pair(ids, pair, merges[pair])
    return ids
