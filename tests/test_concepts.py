"""Concepts are deterministic, normalised to stable ids, and linked by co-occurrence."""

from __future__ import annotations

import random

from core.concepts import build_concepts, candidate_phrases, normalise

CHUNKS = [
    ("d1", 0, "The object store feeds the actor pool. Worker nodes report to the head node."),
    ("d1", 1, "An actor pool schedules tasks; the object store keeps results."),
    ("d2", 0, "Worker nodes join the cluster. The object store spills to disk."),
    ("d2", 1, "The head node runs the dashboard and the actor pool."),
]


def test_same_concepts_whatever_the_order() -> None:
    first = build_concepts(CHUNKS)
    shuffled = CHUNKS[:]
    random.Random(7).shuffle(shuffled)
    second = build_concepts(shuffled)
    assert [(c.concept_id, c.chunk_refs, c.edges) for c in first] == [
        (c.concept_id, c.chunk_refs, c.edges) for c in second
    ]


def test_normalised_ids_and_chunks() -> None:
    concepts = {c.concept_id: c for c in build_concepts(CHUNKS)}
    assert "object-store" in concepts
    assert concepts["object-store"].chunk_refs == [("d1", 0), ("d1", 1), ("d2", 0)]
    assert "worker-node" in concepts  # plural folded
    assert concepts["worker-node"].label == "worker nodes"
    assert all(len(c.chunk_refs) >= 2 for c in concepts.values())


def test_edges_are_symmetric_and_weighted() -> None:
    concepts = {c.concept_id: c for c in build_concepts(CHUNKS)}
    edges = {(a, b): w for a, c in concepts.items() for b, w in c.edges}
    assert edges[("object-store", "actor-pool")] == 2
    for (a, b), weight in edges.items():
        assert edges[(b, a)] == weight


def test_phrases_skip_stopwords_and_split_sentences() -> None:
    phrases = {cid for cid, _ in candidate_phrases("The head node. Dashboard runs")}
    assert "head-node" in phrases
    assert "node-dashboard" not in phrases  # a sentence boundary between them
    assert not any(p.startswith("the") for p in phrases)
    assert normalise("Classes") == "class"
    assert normalise("policies") == "policy"
    assert normalise("status") == "status"
    assert normalise("nodes") == "node"
