"""The security watchlist: required expiry, four-eyes confirmation, per-store flag, the global kill switch."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from personalization_helpers import STORE

from retailface.services.personalization.domain import VisitEvent
from retailface.services.personalization.service import Personalization
from retailface.services.shared.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied

DAY = 86_400.0
REASON = "shoplifting report 2026-10-02"


def _sighting(personalization: Personalization, event_id: str, subject_id: str = "wl-1", at: float | None = None):  # type: ignore[no-untyped-def]
    return personalization.visits.record(
        VisitEvent(event_id, "entered", STORE, time.time() if at is None else at, member_id=subject_id, track_id="t")
    )


@pytest.fixture
def enabled_store(personalization: Personalization) -> Personalization:
    store = personalization.stores.get(STORE)
    personalization.stores.upsert(replace(store, watchlist_enabled=True), actor="admin:ops")
    return personalization


def test_an_entry_keeps_reason_expiry_and_who_added_it(personalization: Personalization) -> None:
    expires = time.time() + 30 * DAY
    entry = personalization.watchlist.upsert("wl-1", REASON, expires, actor="admin:lea")
    assert (entry.subject_id, entry.reason, entry.added_by, entry.expires_at) == ("wl-1", REASON, "admin:lea", expires)
    assert (entry.confirmed_by, entry.confirmed_at) == ("", None)
    assert personalization.watchlist.entries() == [entry]


def test_an_entry_needs_an_expiry(personalization: Personalization) -> None:
    with pytest.raises(InvalidArgument, match="expires_at is required: entries expire, at most 365 days from now"):
        personalization.watchlist.upsert("wl-1", REASON, None, actor="admin:lea")


def test_an_expiry_in_the_past_is_refused(personalization: Personalization) -> None:
    with pytest.raises(InvalidArgument, match="expires_at must be in the future"):
        personalization.watchlist.upsert("wl-1", REASON, time.time() - 60, actor="admin:lea")


def test_an_expiry_beyond_a_year_is_refused(personalization: Personalization) -> None:
    with pytest.raises(InvalidArgument, match="at most 365 days from now"):
        personalization.watchlist.upsert("wl-1", REASON, time.time() + 400 * DAY, actor="admin:lea")


def test_an_entry_needs_a_reason(personalization: Personalization) -> None:
    with pytest.raises(InvalidArgument, match="reason is required"):
        personalization.watchlist.upsert("wl-1", " ", time.time() + DAY, actor="admin:lea")


def test_a_change_must_name_a_person(personalization: Personalization) -> None:
    with pytest.raises(InvalidArgument, match="actor is required"):
        personalization.watchlist.upsert("wl-1", REASON, time.time() + DAY, actor="")


def test_a_second_person_confirms_an_entry(personalization: Personalization) -> None:
    personalization.watchlist.upsert("wl-1", REASON, time.time() + DAY, actor="admin:lea")
    confirmed = personalization.watchlist.confirm("wl-1", actor="privacy:omar")
    assert confirmed.confirmed_by == "privacy:omar" and confirmed.confirmed_at is not None
    assert personalization.watchlist.entries()[0].confirmed_by == "privacy:omar"


def test_whoever_added_an_entry_cannot_confirm_it_under_another_role(personalization: Personalization) -> None:
    personalization.watchlist.upsert("wl-1", REASON, time.time() + DAY, actor="admin:lea")
    with pytest.raises(PermissionDenied, match="lea added this entry: a second person must confirm it"):
        personalization.watchlist.confirm("wl-1", actor="privacy:lea")


def test_confirming_an_unknown_entry_is_not_found(personalization: Personalization) -> None:
    with pytest.raises(NotFound, match="subject 'wl-9' is not on the watchlist"):
        personalization.watchlist.confirm("wl-9", actor="privacy:omar")


def test_changing_an_entry_needs_a_new_confirmation(personalization: Personalization) -> None:
    personalization.watchlist.upsert("wl-1", REASON, time.time() + DAY, actor="admin:lea")
    personalization.watchlist.confirm("wl-1", actor="privacy:omar")
    changed = personalization.watchlist.upsert("wl-1", "repeat offence", time.time() + 2 * DAY, actor="admin:omar")
    assert (changed.added_by, changed.confirmed_by) == ("admin:omar", "")
    with pytest.raises(PermissionDenied):
        personalization.watchlist.confirm("wl-1", actor="admin:omar")


def test_expired_entries_are_listed_only_when_asked(personalization: Personalization) -> None:
    personalization.watchlist.upsert("wl-1", REASON, time.time() + DAY, actor="admin:lea")
    personalization.watchlist.upsert("wl-2", REASON, time.time() + 2 * DAY, actor="admin:lea")
    later = time.time() + 1.5 * DAY
    assert [e.subject_id for e in personalization.watchlist.entries(now=later)] == ["wl-2"]
    listed = personalization.watchlist.entries(include_expired=True, now=later)
    assert [e.subject_id for e in listed] == ["wl-1", "wl-2"]


def test_a_removed_entry_is_gone(personalization: Personalization) -> None:
    personalization.watchlist.upsert("wl-1", REASON, time.time() + DAY, actor="admin:lea")
    personalization.watchlist.remove("wl-1", actor="privacy:omar", reason="cleared by the police")
    assert personalization.watchlist.entries(include_expired=True) == []


def test_a_confirmed_entry_alerts_in_a_store_that_enabled_the_watchlist(enabled_store: Personalization) -> None:
    enabled_store.watchlist.upsert("wl-1", REASON, time.time() + DAY, actor="admin:lea")
    enabled_store.watchlist.confirm("wl-1", actor="privacy:omar")
    alerts = _sighting(enabled_store, "w-1").alerts_raised
    assert [(a.kind, a.requires_confirmation) for a in alerts] == [("watchlist", True)]


def test_an_unconfirmed_entry_raises_no_alert(enabled_store: Personalization) -> None:
    enabled_store.watchlist.upsert("wl-1", REASON, time.time() + DAY, actor="admin:lea")
    result = _sighting(enabled_store, "w-1")
    assert result.alerts_raised == []
    assert result.notes == ["the watchlist entry awaits confirmation by a second person: no alert"]


def test_an_expired_entry_raises_no_alert(enabled_store: Personalization) -> None:
    enabled_store.watchlist.upsert("wl-1", REASON, time.time() + DAY, actor="admin:lea")
    enabled_store.watchlist.confirm("wl-1", actor="privacy:omar")
    result = _sighting(enabled_store, "w-1", at=time.time() + 2 * DAY)
    assert (result.alerts_raised, result.notes) == ([], ["the watchlist entry expired: no alert"])


def test_the_global_kill_switch_silences_every_store(enabled_store: Personalization) -> None:
    enabled_store.watchlist.upsert("wl-1", REASON, time.time() + DAY, actor="admin:lea")
    enabled_store.watchlist.confirm("wl-1", actor="privacy:omar")
    enabled_store.settings.watchlist_enabled = False
    result = _sighting(enabled_store, "w-1")
    assert result.alerts_raised == []
    assert result.notes == ["watchlist alerts are off in every store (RETAILFACE_PERSONALIZATION_WATCHLIST_ENABLED)"]


def test_confirming_an_expired_entry_is_refused(personalization: Personalization) -> None:
    personalization.watchlist.upsert("wl-1", REASON, time.time() + 0.2, actor="admin:lea")
    time.sleep(0.3)
    with pytest.raises(FailedPrecondition, match="expired: add it again with a new expiry"):
        personalization.watchlist.confirm("wl-1", actor="privacy:omar")
