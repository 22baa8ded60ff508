"""Find games by name: case, accents, punctuation and small typos forgiven (rapidfuzz)."""

from __future__ import annotations

import functools
import heapq
import unicodedata

import numpy as np

# A query word matches a name when rapidfuzz's partial_ratio (best-aligned substring, 0-100)
# reaches this: one letter missing or swapped in a word of four letters or more ("portl",
# "hlaf"); words of three letters or fewer must appear as typed.
WORD_CUTOFF = 75


@functools.cache  # the browser searches the same 30,000 names on every keystroke
def normalize_name(text: str) -> str:
    """Lower case, accents and punctuation dropped, spaces collapsed: "Pokémon: Red!" -> "pokemon red"."""
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join("".join(c if c.isalnum() else " " for c in text).split())


def search_games(names: dict[str, str], text: str, *, ids=None, limit: int = 20) -> list[str]:
    """Ids whose name holds every word of ``text``, allowing a typo per word, best first.

    Args:
        names: ``{id: name}``.
        text: part of a name, any case, accents or punctuation, small typos; or an app id.
        ids: the ids that may be returned (default: all of ``names``).
        limit: at most this many.

    Returns:
        Ids: an exact id first; then names by how well the words match (exact before a typo),
        names starting with the query, shorter names first.
    """
    from rapidfuzz import fuzz, process

    pool = list(names) if ids is None else list(ids)
    text = text.strip()
    hits = [text] if text in set(pool) else []
    words = normalize_name(text).split()
    if not words or not pool:
        return hits[:limit]
    query = " ".join(words)
    normed = [normalize_name(names.get(i, "")) for i in pool]
    # (words, names) scores in one C call; a name must match every word.
    scores = process.cdist(
        words, normed, scorer=fuzz.partial_ratio, score_cutoff=WORD_CUTOFF, dtype=np.uint8
    )
    keep = np.flatnonzero((scores >= WORD_CUTOFF).all(axis=0))
    mean = scores[:, keep].mean(axis=0)
    ranked = heapq.nsmallest(
        limit,
        (
            (-s, not normed[j].startswith(query), len(normed[j]), normed[j], pool[j])
            for s, j in zip(mean.tolist(), keep.tolist())
            if pool[j] not in hits
        ),
    )
    return (hits + [i for *_, i in ranked])[:limit]
