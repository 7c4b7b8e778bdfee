"""The native id table (retailface._matcher.IdTable): the matching service's subject and template ids, their keys,
owners and tag set numbers, compact and in bulk."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from retailface._matcher import Gallery, IdTable

# Ids of every kind of UTF-8 (1- to 4-byte characters, a NUL inside, long enough for 2- and 3-byte lengths).
ODD_IDS = ["Zoë", "Ζωή-1", "名前", "🙂 emoji", "e\u0301", "a\x00b", "a", "x" * 127, "y" * 128, "z" * 20_000]


def pack(ids: list[str]) -> tuple[np.ndarray, bytes]:
    encoded = [value.encode() for value in ids]
    offsets = np.zeros(len(ids) + 1, dtype=np.uint64)
    offsets[1:] = np.cumsum([len(value) for value in encoded])
    return offsets, b"".join(encoded)


def make_gallery(subjects: int, per_subject: int, seed: int = 0) -> dict[str, object]:
    """Subjects s<i> (key 10 + i, tag set i % 3) with templates s<i>-t<j> (key 1000 + i * per_subject + j), in the
    order a snapshot lists them; a few odd ids among them."""
    rng = np.random.default_rng(seed)
    subject_ids = [f"s{i}" for i in range(subjects)]
    subject_ids[: len(ODD_IDS)] = ODD_IDS[:subjects]
    subject_keys = np.arange(10, 10 + subjects, dtype=np.int64)
    tag_sets = (np.arange(subjects) % 3).astype(np.uint32)
    owners = np.repeat(np.arange(subjects), per_subject)
    slots = np.tile(np.arange(per_subject), subjects)
    template_ids = [f"{subject_ids[owner]}-t{j}" for owner, j in zip(owners, slots, strict=True)]
    template_keys = np.arange(1000, 1000 + len(template_ids), dtype=np.int64)
    order = rng.permutation(len(template_ids))  # templates come in slot order, not subject by subject
    return {
        "subject_ids": subject_ids,
        "subject_keys": subject_keys,
        "tag_sets": tag_sets,
        "template_ids": [template_ids[i] for i in order],
        "template_keys": template_keys[order],
        "template_subject_keys": subject_keys[owners][order],
    }


def incremental(data: dict) -> IdTable:
    table = IdTable()
    for subject_id, key, tag_set in zip(data["subject_ids"], data["subject_keys"], data["tag_sets"], strict=True):
        table.add_subject(subject_id, int(key), int(tag_set))
    owner_of = dict(zip(data["subject_keys"].tolist(), data["subject_ids"], strict=True))
    for template_id, key, subject_key in zip(
        data["template_ids"], data["template_keys"], data["template_subject_keys"], strict=True
    ):
        table.bind_template(owner_of[int(subject_key)], template_id, int(key))
    return table


def bulk(data: dict, packed: bool) -> IdTable:
    table = IdTable()
    table.reserve(len(data["subject_ids"]), len(data["template_ids"]))
    if packed:
        table.add_subjects_packed(*pack(data["subject_ids"]), data["subject_keys"], data["tag_sets"])
        bound = table.bind_templates_packed(
            *pack(data["template_ids"]), data["template_keys"], data["template_subject_keys"]
        )
    else:
        table.add_subjects(data["subject_ids"], data["subject_keys"], data["tag_sets"])
        bound = table.bind_templates(data["template_ids"], data["template_keys"], data["template_subject_keys"])
    assert bound == len(data["template_ids"])
    return table


def contents(table: IdTable, data: dict) -> dict[str, object]:
    """Everything a table answers about the data's ids and keys."""
    keys, tag_sets, offsets, blob = table.export_subjects()
    exported = [blob[offsets[i] : offsets[i + 1]].tobytes().decode() for i in range(len(keys))]
    subjects = {
        subject_id: (table.subject(subject_id), table.templates_of(subject_id), table.template_count_of(subject_id))
        for subject_id in data["subject_ids"]
    }
    templates = {template_id: table.template(template_id) for template_id in data["template_ids"]}
    return {
        "export": (keys.tolist(), tag_sets.tolist(), exported),
        "subjects": subjects,
        "templates": templates,
        "by_key": [table.subject_id(int(key)) for key in data["subject_keys"]],
        "template_by_key": table.template_ids(data["template_keys"]),
        "owners": table.owners(data["template_ids"]),
        "counts": (table.subject_count, table.template_count),
    }


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "lists"])
def test_a_bulk_restore_holds_what_incremental_adds_hold(packed: bool) -> None:
    data = make_gallery(subjects=400, per_subject=3)
    expected = contents(incremental(data), data)
    assert contents(bulk(data, packed), data) == expected
    assert expected["counts"] == (400, 1200)
    assert expected["export"][2] == data["subject_ids"]  # subjects come out in the order they went in
    # A subject's templates in the order they were bound.
    first = data["subject_ids"][0]
    bound = [template_id for template_id in data["template_ids"] if template_id.rsplit("-t", 1)[0] == first]
    assert [template_id for template_id, _ in expected["subjects"][first][1]] == bound


def test_ids_of_any_utf8_and_the_empty_id_are_ids_and_a_missing_one_is_none() -> None:
    table = IdTable()
    for key, subject_id in enumerate(["", *ODD_IDS], start=1):
        table.add_subject(subject_id, key, 0)
        table.bind_template(subject_id, subject_id, 100 + key)  # a template id may equal its subject's id
    assert table.subject("") == (1, 0) and table.template("") == (101, "")
    for key, subject_id in enumerate(ODD_IDS, start=2):
        assert table.subject(subject_id) == (key, 0)
        assert table.subject_id(key) == subject_id
        assert table.template_id(100 + key) == subject_id
    # Missing is not empty, and ids differing by a byte (a NUL, a combining accent, one more character) differ.
    for missing in [" ", "a\x00", "é", "x" * 128, "Zoe", "名"]:
        assert table.subject(missing) is None and table.template(missing) is None
        assert table.templates_of(missing) == [] and table.template_count_of(missing) == 0
    assert table.subject_id(999) is None and table.template_id(999) is None
    assert table.names(np.array([1, 999, -1]), np.array([101, 102, -1])) == (["", None, None], ["", "Zoë", None])
    offsets, blob = table.template_ids_packed(np.array([103, 101, 111], dtype=np.int64))
    assert [blob[offsets[i] : offsets[i + 1]].tobytes().decode() for i in range(3)] == ["Ζωή-1", "", "z" * 20_000]
    with pytest.raises(TypeError):
        table.subject(b"bytes are not ids")  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        table.template_ids(np.array([999], dtype=np.int64))
    with pytest.raises(KeyError):
        table.owners(["no such template"])


def test_erasing_a_subject_removes_every_id_of_it_and_zeroes_their_bytes() -> None:
    data = make_gallery(subjects=50, per_subject=4)
    table = bulk(data, packed=True)
    erased = data["subject_ids"][7]
    erased_templates = table.templates_of(erased)
    key = table.subject(erased)[0]
    assert table.remove_subject(erased) == 4
    assert table.subject(erased) is None and table.subject_id(key) is None
    assert table.templates_of(erased) == [] and table.template_count_of(erased) == 0
    for template_id, template_key in erased_templates:
        assert table.template(template_id) is None and table.template_id(template_key) is None
    assert table.subjects_of([erased])[0].size == 0
    assert key not in table.subjects_with_tag_sets(np.ones(3, dtype=np.uint8))
    assert erased.encode() not in table.arena_bytes()  # its id and its templates' ids are zeros now
    assert (table.subject_count, table.template_count) == (49, 196)
    with pytest.raises(KeyError):
        table.remove_subject(erased)
    # The others are untouched.
    reference = bulk(data, packed=True)
    for subject_id in data["subject_ids"]:
        if subject_id != erased:
            assert table.subject(subject_id) == reference.subject(subject_id)
            assert table.templates_of(subject_id) == reference.templates_of(subject_id)


def test_holes_are_compacted_away_and_every_id_stays() -> None:
    data = make_gallery(subjects=300, per_subject=2)
    table = IdTable(min_holes=16)
    table.add_subjects_packed(*pack(data["subject_ids"]), data["subject_keys"], data["tag_sets"])
    table.bind_templates(data["template_ids"], data["template_keys"], data["template_subject_keys"])
    before = table.memory_bytes
    kept = data["subject_ids"][::5]
    for subject_id in data["subject_ids"]:
        if subject_id not in kept:
            table.remove_subject(subject_id)
    assert table.compactions >= 1 and table.holes < 300
    reference = bulk(data, packed=True)
    for subject_id in kept:
        assert table.subject(subject_id) == reference.subject(subject_id)
        assert table.templates_of(subject_id) == reference.templates_of(subject_id)
        for template_id, key in table.templates_of(subject_id):
            assert table.template(template_id) == (key, subject_id) and table.template_id(key) == template_id
    assert table.export_subjects()[0].tolist() == [reference.subject(s)[0] for s in kept]  # order kept
    assert table.subjects_with_tag_sets(np.array([1, 0, 0], dtype=np.uint8)).tolist() == sorted(
        reference.subject(s)[0] for s in kept if reference.subject(s)[1] == 0
    )
    assert table.memory_bytes < before
    # New subjects after a compaction go on as before.
    table.add_subject("late", 5000, 1)
    table.bind_template("late", "late-1", 9000)
    assert table.templates_of("late") == [("late-1", 9000)] and table.template("late-1") == (9000, "late")


def test_the_later_binding_of_a_template_id_or_key_wins() -> None:
    table = IdTable()
    table.add_subject("a", 1, 0)
    table.add_subject("b", 2, 0)
    table.bind_template("a", "t1", 10)
    table.bind_template("a", "t1", 11)  # the same id, a new key: the old key names nothing
    assert table.template("t1") == (11, "a") and table.template_id(10) is None
    table.bind_template("b", "t2", 11)  # the key of t1 now names t2: t1 is forgotten
    assert table.template("t1") is None and table.template_id(11) == "t2"
    assert table.templates_of("a") == [] and table.templates_of("b") == [("t2", 11)]
    table.bind_template("a", "t2", 11)  # t2 moves to a
    assert table.templates_of("a") == [("t2", 11)] and table.templates_of("b") == []
    assert table.template_count == 1
    with pytest.raises(KeyError):
        table.bind_template("nobody", "t3", 12)


def test_a_repeated_subject_id_or_key_is_refused() -> None:
    table = IdTable()
    table.add_subject("a", 1, 0)
    with pytest.raises(ValueError, match="subject id a"):
        table.add_subject("a", 2, 0)
    with pytest.raises(ValueError, match="subject key 1"):
        table.add_subject("b", 1, 0)
    with pytest.raises(ValueError, match="subject id c"):
        table.add_subjects(["b", "c", "c", "d"], np.array([2, 3, 4, 5], dtype=np.int64), np.zeros(4, dtype=np.uint32))
    assert table.subject("c") == (3, 0) and table.subject("d") is None  # the ones before the repeat are in
    # Templates of a subject key no subject has: the index of the first one, nothing bound from it on.
    assert table.bind_templates(["t1", "t2", "t3"], np.array([7, 8, 9]), np.array([1, 99, 1])) == 1
    assert table.template("t1") == (7, "a") and table.template("t3") is None


def test_packed_arguments_are_checked() -> None:
    table = IdTable()
    keys, tag_sets = np.array([1, 2], dtype=np.int64), np.zeros(2, dtype=np.uint32)
    with pytest.raises(ValueError, match="must not decrease"):
        table.add_subjects_packed(np.array([0, 2, 1], dtype=np.uint64), b"abc", keys, tag_sets)
    with pytest.raises(ValueError, match="past the end"):
        table.add_subjects_packed(np.array([0, 2, 4], dtype=np.uint64), b"abc", keys, tag_sets)
    with pytest.raises(ValueError, match="one more entry"):
        table.add_subjects_packed(np.array([0, 3], dtype=np.uint64), b"abc", keys, tag_sets)
    with pytest.raises(ValueError, match="uint64"):
        table.add_subjects_packed(np.array([0, 1, 3], dtype=np.int64), b"abc", keys, tag_sets)
    with pytest.raises(TypeError):
        table.add_subjects(["a", 2], keys, tag_sets)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        table.add_subjects("ab", keys, tag_sets)  # one str is not a sequence of ids
    assert table.subject_count == 0
    # A slice of a larger blob: offsets need not start at 0.
    table.add_subjects_packed(np.array([1, 2, 3], dtype=np.uint64), np.frombuffer(b"xab", np.uint8), keys, tag_sets)
    assert (table.subject("a"), table.subject("b")) == ((1, 0), (2, 0))


def test_a_million_template_ids_take_under_48_bytes_each_besides_their_bytes() -> None:
    """500,000 subjects of two templates each (ids of 15 and 18 bytes): the whole table, arena included. Per id:
    24 bytes of row arrays and two table entries of 8 bytes at 75% (id_table.hpp)."""
    subjects, per_subject = 500_000, 2
    subject_ids = [f"member-{i:08d}" for i in range(subjects)]
    template_ids = [f"member-{i:08d}-t{j}" for i in range(subjects) for j in range(per_subject)]
    id_bytes = sum(len(value) + 1 for value in subject_ids) + sum(len(value) + 1 for value in template_ids)
    table = IdTable()
    table.reserve(subjects, len(template_ids), id_bytes)  # as a snapshot's load does
    table.add_subjects_packed(
        *pack(subject_ids), np.arange(1, subjects + 1, dtype=np.int64), np.zeros(subjects, dtype=np.uint32)
    )
    subject_keys = np.repeat(np.arange(1, subjects + 1, dtype=np.int64), per_subject)
    assert table.bind_templates_packed(*pack(template_ids), np.arange(len(template_ids), dtype=np.int64), subject_keys)
    rows = subjects + len(template_ids)
    per_row = (table.memory_bytes - id_bytes) / rows
    assert per_row <= 48, f"{per_row:.1f} bytes per id besides the ids' bytes"
    # Per template, its subject's share included: under 100 bytes (the Python dicts took about 780, BENCHMARKS.md).
    assert table.memory_bytes / len(template_ids) < 100
    assert table.template("member-00123456-t1") == (246913, "member-00123456")


def test_a_bulk_call_lets_other_threads_search_meanwhile() -> None:
    """Bulk calls release the GIL: a search on another thread completes while one runs."""
    count = 1_500_000
    offsets, blob = pack([f"template-{i}" for i in range(count)])
    keys = np.arange(count, dtype=np.int64)
    table = IdTable()
    table.add_subject("everyone", 0, 0)
    gallery = Gallery(dim=8, capacity=16)
    vectors = np.eye(8, dtype=np.float32)
    gallery.add(np.arange(8, dtype=np.int64), np.arange(8, dtype=np.int64), vectors)
    span: list[float] = []

    def bind() -> None:
        span.append(time.perf_counter())
        table.bind_templates_packed(offsets, blob, keys, np.zeros(count, dtype=np.int64))
        span.append(time.perf_counter())

    worker = threading.Thread(target=bind)
    searched: list[float] = []
    worker.start()
    while worker.is_alive():
        gallery.search(vectors[:1], top_k=1)
        searched.append(time.perf_counter())
    worker.join()
    assert table.template_count == count
    start, end = span
    if end - start < 0.05:
        pytest.skip(f"the bulk call took only {end - start:.3f} s: too short to tell")
    during = [moment for moment in searched if start < moment < end]
    assert len(during) >= 5, f"{len(during)} searches completed during a {end - start:.2f} s bulk call"
