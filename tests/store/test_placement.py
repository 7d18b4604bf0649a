"""Blocks of one time block prefer one worker; with fewer time blocks than workers, the
granules of a time block are split among workers (pure functions, hand-computed cases)."""

from __future__ import annotations

from itslive_dask.store.runner import slab_placement


def test_one_time_block_one_worker_in_contiguous_runs():
    blocks = [(0, 0, 0), (0, 1, 2), (1, 0, 0), (1, 2, 1), (2, 0, 0), (3, 1, 1), (3, 0, 0)]
    got = slab_placement(blocks, ["tcp://a", "tcp://b"])
    # time blocks 0, 1 on a; 2, 3 on b; every tile of a time block with its time block
    assert got == {
        (0, 0, 0): ["tcp://a"], (0, 1, 2): ["tcp://a"], (1, 0, 0): ["tcp://a"], (1, 2, 1): ["tcp://a"],
        (2, 0, 0): ["tcp://b"], (3, 1, 1): ["tcp://b"], (3, 0, 0): ["tcp://b"],
    }  # fmt: skip


def test_three_time_blocks_on_two_workers():
    got = slab_placement([(2, 0, 0), (0, 0, 0), (1, 0, 0)], ["tcp://b", "tcp://a"])
    assert got == {(0, 0, 0): ["tcp://b"], (1, 0, 0): ["tcp://b"], (2, 0, 0): ["tcp://a"]}


def test_no_preference_without_a_choice():
    assert slab_placement([(0, 0, 0), (1, 0, 0)], ["tcp://a"]) == {}
    assert slab_placement([(0, 0, 0)], []) == {}


def test_granules_are_split_only_with_fewer_time_blocks_than_workers():
    from itslive_dask.store.runner import granule_split

    one = [(0, 0, 0), (0, 0, 1), (0, 1, 0)]
    assert granule_split(one, ["tcp://a", "tcp://b"]) == {0: ["tcp://a", "tcp://b"]}
    # 2 time blocks on 5 workers: 2 workers each, the fifth idles rather than re-fetching
    assert granule_split([(3, 0, 0), (7, 1, 1)], list("abcde")) == {3: ["a", "b"], 7: ["c", "d"]}
    assert granule_split([(0, 0, 0), (1, 0, 0)], ["tcp://a", "tcp://b"]) == {}
    assert granule_split(one, ["tcp://a"]) == {}
    assert granule_split([], ["tcp://a", "tcp://b"]) == {}


def test_a_block_is_cut_by_layer_position_the_same_way_for_every_tile():
    from itslive_dask.store.runner import _parts

    refs = tuple((p, f"g{p}") for p in (0, 2, 3, 6, 7))
    # a time block of layers 16..24 (8 layers) on 2 workers: positions 0-3 and 4-7
    assert _parts(refs, (16, 24), ["a", "b"]) == [
        ("a", (0, 4), ((0, "g0"), (2, "g2"), (3, "g3"))),
        ("b", (4, 8), ((6, "g6"), (7, "g7"))),
    ]
    # a tile that only the first half of the granules touch: one part, not split
    assert _parts(refs[:3], (16, 24), ["a", "b"]) == [("a", (0, 4), refs[:3])]
    assert _parts(refs[:1], (16, 24), ["a", "b"]) == []


def test_only_granules_read_by_several_blocks_keep_their_chunks():
    from types import SimpleNamespace as R

    from itslive_dask.store.runner import _read_by_several

    a, b, c = R(url="a"), R(url="b"), R(url="c")
    blocks = [((0, a), (1, b)), ((0, a),), ((3, c), (4, c))]  # c twice in one block: still one
    assert _read_by_several(blocks) == {"a"}
    assert _read_by_several([]) == set()
