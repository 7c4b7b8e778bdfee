"""The ids of one gallery: subjects and templates have string ids in the API and int64 keys in the native index.

Keys are allocated here, written in the log records, and never reused, so a replay rebuilds exactly the
same index. Tags are indexed by subject key, so that a filter resolves to the sorted subject keys the
native search takes (cached until the maps change). Not locked by itself: the gallery store serialises
changes and holds its maps lock where a search may read concurrently.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from retailface.services.matching.errors import TemplateConflictError

FILTER_CACHE_ENTRIES = 64


@dataclass(slots=True)
class Subject:
    key: int
    tags: frozenset[str]
    templates: dict[str, int] = field(default_factory=dict)  # template id -> template key


class SubjectIndex:
    def __init__(self, gallery: str) -> None:
        self.gallery = gallery
        self.next_subject_key = 1
        self.next_template_key = 1
        self._subjects: dict[str, Subject] = {}
        self._subject_ids_by_key: dict[int, str] = {}
        self._template_ids_by_key: dict[int, str] = {}
        self._template_owner: dict[str, str] = {}
        self._subjects_by_tag: dict[str, set[int]] = {}
        self._version = 0  # bumped by every change of subjects or tags; invalidates cached filters
        self._filter_cache: dict[frozenset[str], tuple[int, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._subjects)

    def __contains__(self, subject_id: str) -> bool:
        return subject_id in self._subjects

    def get(self, subject_id: str) -> Subject | None:
        return self._subjects.get(subject_id)

    def items(self) -> Iterator[tuple[str, Subject]]:
        return iter(self._subjects.items())

    def subject_id(self, key: int) -> str | None:
        return self._subject_ids_by_key.get(key)

    def template_id(self, key: int) -> str | None:
        return self._template_ids_by_key.get(key)

    def owner(self, template_id: str) -> str | None:
        return self._template_owner.get(template_id)

    def template_count(self, subject_id: str) -> int:
        subject = self._subjects.get(subject_id)
        return len(subject.templates) if subject is not None else 0

    def template_ids_of(self, keys: Iterable[int]) -> list[str]:
        """The ids of templates that the index holds (KeyError for a key that no template has)."""
        return [self._template_ids_by_key[int(key)] for key in keys]

    def owners_of(self, template_ids: Iterable[str]) -> list[str]:
        """The subject ids of known templates (KeyError for an unknown one)."""
        return [self._template_owner[template_id] for template_id in template_ids]

    # ------------------------------------------------------------ changes

    def keys_for_enroll(self, subject_id: str, template_ids: Sequence[str]) -> tuple[int, list[int]]:
        """The subject's key and each template's key for an enroll: existing ones, new ones otherwise."""
        for template_id in template_ids:
            owner = self._template_owner.get(template_id)
            if owner is not None and owner != subject_id:
                raise TemplateConflictError(
                    f"template id {template_id} already belongs to another subject of gallery {self.gallery}"
                )
        subject = self._subjects.get(subject_id)
        subject_key = subject.key if subject is not None else self.next_subject_key
        template_keys = []
        next_key = self.next_template_key
        for template_id in template_ids:
            existing = subject.templates.get(template_id) if subject is not None else None
            if existing is None:
                existing, next_key = next_key, next_key + 1
            template_keys.append(existing)
        return subject_key, template_keys

    def add_subject(self, subject_id: str, key: int, tags: frozenset[str]) -> Subject:
        subject = Subject(key, tags)
        self._subjects[subject_id] = subject
        self._subject_ids_by_key[key] = subject_id
        for tag in tags:
            self._subjects_by_tag.setdefault(tag, set()).add(key)
        self.next_subject_key = max(self.next_subject_key, key + 1)
        self._version += 1
        return subject

    def bind_template(self, subject_id: str, template_id: str, template_key: int) -> None:
        self._subjects[subject_id].templates[template_id] = template_key
        self._template_ids_by_key[template_key] = template_id
        self._template_owner[template_id] = subject_id
        self.next_template_key = max(self.next_template_key, template_key + 1)

    def restore(self, subjects: list[list[object]]) -> None:
        """Adds a snapshot's subjects ([id, key, tags]) at once; the index must be empty."""
        by_id, by_key = self._subjects, self._subject_ids_by_key
        tag_sets: dict[tuple[str, ...], frozenset[str]] = {}  # most subjects share a handful of tag sets
        for subject_id, key, tags in subjects:
            frozen = tag_sets.get(tuple(tags))  # type: ignore[arg-type]
            if frozen is None:
                frozen = tag_sets.setdefault(tuple(tags), frozenset(tags))  # type: ignore[arg-type]
            by_id[subject_id] = Subject(key, frozen)  # type: ignore[index,arg-type]
            by_key[key] = subject_id  # type: ignore[index,assignment]
            for tag in frozen:
                self._subjects_by_tag.setdefault(tag, set()).add(key)  # type: ignore[arg-type]
        if by_id:
            self.next_subject_key = max(self.next_subject_key, max(self._subject_ids_by_key) + 1)
        self._version += 1

    def bind_many(self, template_ids: list[str], template_keys: np.ndarray, subject_keys: np.ndarray) -> None:
        """bind_template for a snapshot's chunk of templates, in bulk; KeyError for a subject key no subject has."""
        keys = template_keys.tolist()
        owners = [self._subject_ids_by_key[key] for key in subject_keys.tolist()]
        self._template_ids_by_key.update(zip(keys, template_ids, strict=True))
        self._template_owner.update(zip(template_ids, owners, strict=True))
        subjects = self._subjects
        for template_id, key, owner in zip(template_ids, keys, owners, strict=True):
            subjects[owner].templates[template_id] = key
        if keys:
            self.next_template_key = max(self.next_template_key, max(keys) + 1)

    def set_tags(self, subject: Subject, tags: frozenset[str]) -> None:
        for tag in subject.tags - tags:
            holders = self._subjects_by_tag.get(tag)
            if holders is not None:
                holders.discard(subject.key)
                if not holders:
                    del self._subjects_by_tag[tag]
        for tag in tags - subject.tags:
            self._subjects_by_tag.setdefault(tag, set()).add(subject.key)
        subject.tags = tags
        self._version += 1

    def remove(self, subject_id: str) -> Subject:
        """Forgets the subject and its templates (their keys stay used); returns what it was."""
        subject = self._subjects.pop(subject_id)
        del self._subject_ids_by_key[subject.key]
        for template_id, template_key in subject.templates.items():
            del self._template_ids_by_key[template_key]
            del self._template_owner[template_id]
        self.set_tags(subject, frozenset())
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
        allowed: set[int] | None = None
        for tag in sorted(tags, key=lambda name: len(self._subjects_by_tag.get(name, ()))):
            holders = self._subjects_by_tag.get(tag, set())
            allowed = set(holders) if allowed is None else allowed & holders
        if subject_ids:
            by_id = {self._subjects[s].key for s in subject_ids if s in self._subjects}
            allowed = by_id if allowed is None else allowed & by_id
        assert allowed is not None
        keys = np.sort(np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
        if not subject_ids:
            if len(self._filter_cache) >= FILTER_CACHE_ENTRIES:
                self._filter_cache.clear()
            self._filter_cache[tags] = (self._version, keys)
        return keys
