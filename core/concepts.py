"""Key-phrase concepts and their co-occurrence graph: pure and deterministic, no Ray, no LLM.

A candidate phrase is a run of one to three content words inside a sentence. It is
normalised (lower case, a plural `s` dropped) into a stable concept id. Concepts that occur
in at least two chunks are ranked by chunk frequency times a phrase-length bonus, ties broken by id.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

MAX_PHRASE_WORDS = 3
MIN_WORD_CHARS = 3
MIN_CHUNKS_PER_CONCEPT = 2
MAX_CONCEPTS = 300
MAX_EDGES_PER_CONCEPT = 20

_SENTENCE_SPLIT = re.compile(r"[.!?;:()\[\]{}\"\n]+")
_WORD = re.compile(r"[A-Za-z][A-Za-z\-]*[A-Za-z]|[A-Za-z]")
_STOPWORD_TEXT = """
a about above after again against all also am an and any are as at be because been
before being below between both but by can could did do does doing down during each few
for from further had has have having he her here hers herself him himself his how
however i if in into is it its itself just least less let like made make many may me
might more most much must my myself no nor not now of off often on once one only or
other our ours ourselves out over own same see seen she should since so some such than
that the their theirs them themselves then there these they this those through thus to
too two under until up upon us use used uses using very was we were what when where
which while who whom why will with within without would yet you your yours yourself
yourselves also each every either neither first second new page pages figure table see
e.g i.e etc
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass
class Concept:
    concept_id: str
    label: str
    chunk_refs: list[tuple[str, int]]
    score: float
    edges: list[tuple[str, int]] = field(default_factory=list)


def normalise(word: str) -> str:
    """Lower case with a plural folded: nodes → node, policies → policy, classes → class."""
    word = word.lower()
    if len(word) <= 4 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    return word[:-1]


def candidate_phrases(text: str) -> Iterable[tuple[str, str]]:
    """(concept id, surface form) of every candidate phrase in a text."""
    for sentence in _SENTENCE_SPLIT.split(text):
        words = _WORD.findall(sentence)
        run: list[str] = []
        for word in [*words, ""]:
            if word and len(word) >= MIN_WORD_CHARS and word.lower() not in STOPWORDS:
                run.append(word)
                continue
            yield from _phrases_of_run(run)
            run = []


def _phrases_of_run(run: list[str]) -> Iterable[tuple[str, str]]:
    normalised = [normalise(w) for w in run]  # once per word, not once per phrase
    for size in range(1, MAX_PHRASE_WORDS + 1):
        for start in range(len(run) - size + 1):
            end = start + size
            yield "-".join(normalised[start:end]), " ".join(run[start:end])


def build_concepts(chunks: Iterable[tuple[str, int, str]]) -> list[Concept]:
    """Concepts with their chunks and weighted co-occurrence edges.

    Args:
        chunks: (document id, chunk number, text), in any order: output does not depend on it.
    """
    refs: dict[str, set[tuple[str, int]]] = defaultdict(set)
    surfaces: dict[str, Counter[str]] = defaultdict(Counter)
    for document_id, chunk_no, text in chunks:
        for concept_id, surface in candidate_phrases(text):
            refs[concept_id].add((document_id, chunk_no))
            surfaces[concept_id][surface.lower()] += 1
    scored = [
        (len(chunk_set) * (1 + 0.5 * (concept_id.count("-"))), concept_id)
        for concept_id, chunk_set in refs.items()
        if len(chunk_set) >= MIN_CHUNKS_PER_CONCEPT
    ]
    scored.sort(key=lambda item: (-item[0], item[1]))
    concepts = [
        Concept(concept_id, _label(surfaces[concept_id]), sorted(refs[concept_id]), score)
        for score, concept_id in scored[:MAX_CONCEPTS]
    ]
    _link(concepts)
    return concepts


def _label(forms: Counter[str]) -> str:
    return min(forms.items(), key=lambda item: (-item[1], item[0]))[0]


def _link(concepts: list[Concept]) -> None:
    """Edges: the concepts sharing the most chunks with each, ties by id. The counts are one
    product of the chunk x concept incidence matrix (pairs per chunk grow with the square of
    its concepts, too slow in Python on a large workspace)."""
    if not concepts:
        return
    ids = [c.concept_id for c in concepts]
    rows = {ref: i for i, ref in enumerate({r for c in concepts for r in c.chunk_refs})}
    incidence = np.zeros((len(rows), len(concepts)), dtype=np.int32)
    for column, concept in enumerate(concepts):
        incidence[[rows[ref] for ref in concept.chunk_refs], column] = 1
    shared = incidence.T @ incidence
    np.fill_diagonal(shared, 0)
    id_rank = np.argsort(np.argsort(np.array(ids)))  # position of each id in id order
    for column, concept in enumerate(concepts):
        weights = shared[column]
        order = np.lexsort((id_rank, -weights))  # most shared first, then by id
        linked = [k for k in order[:MAX_EDGES_PER_CONCEPT] if weights[k] > 0]
        concept.edges = [(ids[k], int(weights[k])) for k in linked]
