"""The ids of one gallery: subjects and templates have string ids in the API and int64 keys in the native index.

Keys are allocated here, written in the log records, and never reused, so a replay rebuilds exactly the
same index. The ids themselves live in a native id table (`retailface._matcher.IdTable`,
native/include/retailface/id_table.hpp): one arena of UTF-8 bytes and open-addressing tables, about 40 bytes
per subject and per template plus the ids' bytes, with no Python object per id; a snapshot's ids go in and
out in bulk (`snapshots.PackedIds`). Each subject's tags are a small number there, naming one of the gallery's
distinct tag sets, which are kept here (a handful of interned frozensets, however many subjects share them). A
filter resolves to the sorted subject keys the native search takes (cached until the maps change). Not locked
by itself: the gallery store serialises changes and holds its maps lock where a search may read concurrently
(the native table is safe from any thread on its own; the lock is what keeps the ids and the index in step).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from retailface import _matcher
from retailface.services.matching.errors import TemplateConflictError
from retailface.services.matching.snapshots import PackedIds, PackedSubjects, SubjectChunk

FILTER_CACHE_ENTRIES = 64


@dataclass(frozen=True, slots=True)
class Subject:
    """One subject as the index holds it when asked (a copy: later changes do not show in it)."""

    key: int
    tags: frozenset[str]
    templates: dict[str, int]  # template id -> template key, in the order they were bound


class SubjectIndex:
    def __init__(self, gallery: str) -> None:
        self.gallery = gallery
        self.next_subject_key = 1
        self.next_template_key = 1
        self._table = _matcher.IdTable()
        # Tag sets by number (the id table holds each subject's number), how many subjects have each, and the
        # numbers no subject has any more (reused for the next new tag set).
        self._tag_sets: list[frozenset[str]] = []
        self._tag_set_numbers: dict[frozenset[str], int] = {}
        self._tag_set_uses: list[int] = []
        self._free_tag_sets: list[int] = []
        self._version = 0  # bumped by every change of subjects or tags; invalidates cached filters
        self._filter_cache: dict[frozenset[str], tuple[int, np.ndarray]] = {}

    def __len__(self) -> int:
        return int(self._table.subject_count)

    def __contains__(self, subject_id: object) -> bool:
        return isinstance(subject_id, str) and self._table.subject(subject_id) is not None

    @property
    def memory_bytes(self) -> int:
        """The id table's bytes (the tag sets' few Python objects aside)."""
        return int(self._table.memory_bytes)

    def get(self, subject_id: str) -> Subject | None:
        found = self._table.subject(subject_id)
        if found is None:
            return None
        key, number = found
        return Subject(key, self._tag_sets[number], dict(self._table.templates_of(subject_id)))

    def tags(self, subject_id: str) -> frozenset[str]:
        """The subject's tags (empty when unknown)."""
        found = self._table.subject(subject_id)
        return self._tag_sets[found[1]] if found is not None else frozenset()

    def templates(self, subject_id: str) -> dict[str, int]:
        """Template id -> template key of the subject, in the order they were bound (empty when unknown)."""
        return dict(self._table.templates_of(subject_id))

    def items(self) -> Iterator[tuple[str, Subject]]:
        """Every subject (one native call each: `export` is the bulk form)."""
        keys, numbers, offsets, blob = self._table.export_subjects()
        for subject_id, key, number in zip(PackedIds(offsets, blob), keys.tolist(), numbers.tolist(), strict=True):
            yield subject_id, Subject(key, self._tag_sets[number], dict(self._table.templates_of(subject_id)))

    def subject_id(self, key: int) -> str | None:
        return self._table.subject_id(key)

    def template_id(self, key: int) -> str | None:
        return self._table.template_id(key)

    def names(self, subject_keys: np.ndarray, template_keys: np.ndarray) -> tuple[list[str | None], list[str | None]]:
        """Search results named, flat in the arrays' order: None for a key below 0 or one no id names (erased)."""
        return self._table.names(subject_keys, template_keys)

    def owner(self, template_id: str) -> str | None:
        found = self._table.template(template_id)
        return found[1] if found is not None else None

    def template_count(self, subject_id: str) -> int:
        return int(self._table.template_count_of(subject_id))

    def template_ids_of(self, keys: Iterable[int]) -> list[str]:
        """The ids of templates that the index holds (KeyError for a key that no template has)."""
        return self._table.template_ids(np.asarray(keys if isinstance(keys, np.ndarray) else list(keys), np.int64))

    def template_ids_packed(self, keys: np.ndarray) -> PackedIds:
        """template_ids_of in bulk form (a snapshot's), with no str per id."""
        offsets, blob = self._table.template_ids_packed(np.ascontiguousarray(keys, dtype=np.int64))
        return PackedIds(offsets, blob)

    def owners_of(self, template_ids: Iterable[str]) -> list[str]:
        """The subject ids of known templates (KeyError for an unknown one)."""
        return self._table.owners(template_ids if isinstance(template_ids, list) else list(template_ids))

    def export(self) -> PackedSubjects:
        """Every subject in bulk form (a snapshot's): ids, keys, and the tag sets they use, as sorted lists."""
        keys, numbers, offsets, blob = self._table.export_subjects()
        used = np.flatnonzero(np.bincount(numbers, minlength=len(self._tag_sets)))
        renumber = np.zeros(max(len(self._tag_sets), 1), dtype=np.uint32)
        renumber[used] = np.arange(len(used), dtype=np.uint32)
        tag_sets = [sorted(self._tag_sets[number]) for number in used.tolist()]
        return PackedSubjects(tag_sets, [SubjectChunk(PackedIds(offsets, blob), keys, renumber[numbers])])

    # ------------------------------------------------------------ tag sets

    def _tag_set(self, tags: frozenset[str]) -> int:
        """The number of this tag set, numbered now if it is new (uses are counted by the caller)."""
        number = self._tag_set_numbers.get(tags)
        if number is not None:
            return number
        if self._free_tag_sets:
            number = self._free_tag_sets.pop()
            self._tag_sets[number] = tags
        else:
            number = len(self._tag_sets)
            self._tag_sets.append(tags)
            self._tag_set_uses.append(0)
        self._tag_set_numbers[tags] = number
        return number

    def _use_tag_set(self, number: int, count: int) -> None:
        """Counts `count` more (or, negative, fewer) subjects of the tag set; one that none has is forgotten."""
        self._tag_set_uses[number] += count
        if self._tag_set_uses[number] == 0:
            del self._tag_set_numbers[self._tag_sets[number]]
            self._tag_sets[number] = frozenset()
            self._free_tag_sets.append(number)

    # ------------------------------------------------------------ changes

    def keys_for_enroll(self, subject_id: str, template_ids: Sequence[str]) -> tuple[int, list[int]]:
        """The subject's key and each template's key for an enroll: existing ones, new ones otherwise."""
        found = [self._table.template(template_id) for template_id in template_ids]
        for template_id, held in zip(template_ids, found, strict=True):
            if held is not None and held[1] != subject_id:
                raise TemplateConflictError(
                    f"template id {template_id} already belongs to another subject of gallery {self.gallery}"
                )
        subject = self._table.subject(subject_id)
        subject_key = subject[0] if subject is not None else self.next_subject_key
        template_keys = []
        next_key = self.next_template_key
        for held in found:
            if held is not None:
                template_keys.append(held[0])
            else:
                template_keys.append(next_key)
                next_key += 1
        return subject_key, template_keys

    def reserve(self, subjects: int, templates: int, id_bytes: int = 0) -> None:
        """Room for this many more subjects, templates and bytes of ids (a snapshot's load)."""
        self._table.reserve(subjects, templates, id_bytes)

    def add_subject(self, subject_id: str, key: int, tags: frozenset[str]) -> Subject:
        """A new subject (ValueError when the id or the key is already a subject's)."""
        number = self._tag_set(tags)
        try:
            self._table.add_subject(subject_id, key, number)
        except BaseException:
            self._use_tag_set(number, 0)  # forgotten again if no subject has it
            raise
        self._use_tag_set(number, 1)
        self.next_subject_key = max(self.next_subject_key, key + 1)
        self._version += 1
        return Subject(key, self._tag_sets[number], {})

    def bind_template(self, subject_id: str, template_id: str, template_key: int) -> None:
        self._table.bind_template(subject_id, template_id, template_key)
        self.next_template_key = max(self.next_template_key, template_key + 1)

    def restore(self, subjects: Sequence[Sequence[Any]]) -> None:
        """Adds a snapshot's subjects at once (PackedSubjects, or [id, key, tags] lists); the index must be empty.
        ValueError when an id or a key repeats."""
        packed = subjects if isinstance(subjects, PackedSubjects) else PackedSubjects.from_lists(subjects)
        numbers = np.asarray([self._tag_set(frozenset(tags)) for tags in packed.tag_sets], dtype=np.uint32)
        uses = np.zeros(len(numbers), dtype=np.int64)
        try:
            for chunk in packed.chunks:
                if not len(chunk):
                    continue
                self._table.add_subjects_packed(chunk.ids.offsets, chunk.ids.blob, chunk.keys, numbers[chunk.tag_sets])
                uses += np.bincount(chunk.tag_sets, minlength=len(numbers))
                self.next_subject_key = max(self.next_subject_key, int(chunk.keys.max()) + 1)
        finally:
            counted: dict[int, int] = {}
            for number, count in zip(numbers.tolist(), uses.tolist(), strict=True):
                counted[number] = counted.get(number, 0) + count
            for number, count in counted.items():
                self._use_tag_set(number, count)
            self._version += 1

    def bind_many(self, template_ids: Sequence[str], template_keys: np.ndarray, subject_keys: np.ndarray) -> None:
        """bind_template for a snapshot's chunk of templates, in bulk; KeyError for a subject key no subject has."""
        if isinstance(template_ids, PackedIds):
            ids = template_ids
            bound = self._table.bind_templates_packed(ids.offsets, ids.blob, template_keys, subject_keys)
        else:
            listed = template_ids if isinstance(template_ids, list) else list(template_ids)
            bound = self._table.bind_templates(listed, template_keys, subject_keys)
        if bound != len(template_keys):
            raise KeyError(int(subject_keys[bound]))
        if len(template_keys):
            self.next_template_key = max(self.next_template_key, int(template_keys.max()) + 1)

    def set_tags(self, subject_id: str, tags: frozenset[str]) -> None:
        """Replaces the subject's tags (KeyError for an unknown subject)."""
        found = self._table.subject(subject_id)
        if found is None:
            raise KeyError(subject_id)
        before, number = found[1], self._tag_set(tags)
        if number != before:
            self._table.set_tag_set(subject_id, number)
            self._use_tag_set(number, 1)
            self._use_tag_set(before, -1)
        self._version += 1

    def remove(self, subject_id: str) -> Subject:
        """Forgets the subject and its templates (their keys stay used, their ids are zeroed); returns what it was."""
        found = self._table.subject(subject_id)
        if found is None:
            raise KeyError(subject_id)
        key, number = found
        subject = Subject(key, self._tag_sets[number], dict(self._table.templates_of(subject_id)))
        self._table.remove_subject(subject_id)
        self._use_tag_set(number, -1)
        self._version += 1
        return subject

    # ------------------------------------------------------------ filters

    def allowed_keys(self, subject_ids: Sequence[str], required_tags: Sequence[str]) -> np.ndarray | None:
        """The sorted subject keys a filter allows (subject ids AND every tag), or None for no filter."""
        if not subject_ids and not required_tags:
            return None
        tags = frozenset(required_tags)
        if not subject_ids:
            cached = self._filter_cache.get(tags)
            if cached is not None and cached[0] == self._version:
                return cached[1]
        allowed = None  # per tag set number: does it hold every required tag?
        if tags:
            allowed = np.fromiter(
                (uses > 0 and tags <= held for held, uses in zip(self._tag_sets, self._tag_set_uses, strict=True)),
                dtype=np.uint8,
                count=len(self._tag_sets),
            )
        if subject_ids:
            keys, numbers = self._table.subjects_of(subject_ids if isinstance(subject_ids, list) else list(subject_ids))
            if allowed is not None:
                keys = keys[allowed[numbers] != 0]
            return np.unique(keys)
        assert allowed is not None
        keys = self._table.subjects_with_tag_sets(allowed)
        if len(self._filter_cache) >= FILTER_CACHE_ENTRIES:
            self._filter_cache.clear()
        self._filter_cache[tags] = (self._version, keys)
        return keys
