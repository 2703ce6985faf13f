"""IdSet: the committed ids a run over containers sends to its decode tasks, as hash arrays."""

from __future__ import annotations

import pickle

import numpy as np

from pipeline.tokenize.id_set import IdSet


def test_membership_is_exact_for_listed_ids_and_others():
    listed = [f"shard-{n:05d}.tar/clip-{n}" for n in range(50_000)] + ["", "é/ü", "a\udc80b", "x" * 1024]
    ids = IdSet.of(listed)
    assert len(ids) == len(listed)
    assert all(id in ids for id in listed)
    assert not any(f"shard-{n:05d}.tar/clip-{n + 1}" in ids for n in range(50_000))
    assert "a\udc80c" not in ids and None not in ids and 7 not in ids
    assert "anything" not in IdSet.of([]) and len(IdSet.of(iter(()))) == 0


def test_it_travels_as_two_arrays_of_16_bytes_an_id():
    ids = IdSet.of(f"id-{n}" for n in range(10_000))
    assert (ids.high.dtype, ids.low.dtype, ids.high.nbytes + ids.low.nbytes) == (np.uint64, np.uint64, 160_000)
    assert np.all(ids.high[:-1] <= ids.high[1:])
    copy = pickle.loads(pickle.dumps(ids, protocol=5))  # as Ray serializes it
    assert "id-9999" in copy and "id-10000" not in copy
