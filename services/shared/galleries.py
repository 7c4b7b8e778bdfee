"""The galleries matching holds, named once for every service that asks for one."""

from __future__ import annotations

MEMBERS_GALLERY = "members"  # loyalty members who consented to face identification
WATCHLIST_GALLERY = "watchlist"  # confirmed watchlist entries; off by default per store
GALLERIES = (MEMBERS_GALLERY, WATCHLIST_GALLERY)
