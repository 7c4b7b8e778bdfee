"""Failed authentications counted per peer address, with a lockout that doubles on repeat offences.

What counts: a call with no bearer token or an unknown one (UNAUTHENTICATED). A call refused for its
role (PERMISSION_DENIED) does not count: its caller holds a valid token, so it is not guessing one;
it is counted in the metrics only.

- `max_failures` failures within `window` seconds lock the peer out for `lockout` seconds.
- Once a peer has been locked out, each further failure (before it has been quiet for `window`
  seconds after its lock ended) locks it again at once, for twice as long as the last time, up to
  `lockout_max` seconds: a guesser gets one try per lockout, and the lockouts grow to the cap.
- While locked the peer is refused before its token is looked at; those calls neither count as
  failures nor lengthen the lock.
- A successful authentication changes nothing: it does not end a lockout early, nor reset the
  count or the doubling. A peer may be shared (a NAT, a proxy) or a caller may hold a low-privilege
  token and guess a stronger one between valid calls; neither must earn a guesser a fresh budget.
  A peer is forgiven by time only: quiet for `window` seconds after its last failure and its lock.
- At most `max_peers` peers are tracked; a new one evicts the one that failed least recently, so a
  flood of addresses cannot grow memory without bound.

Thread-safe; `clock` (monotonic seconds) is injectable for tests.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_MAX_PEERS = 10_000


def peer_address(peer: str) -> str:
    """gRPC's `context.peer()` without the port: "ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7"."""
    if peer.startswith(("ipv4:", "ipv6:")):
        host, sep, port = peer.rpartition(":")
        if sep and port.isdigit() and host not in ("ipv4", "ipv6"):
            return host
    return peer


@dataclass
class _Peer:
    failures: deque[float] = field(default_factory=deque)  # times of failures in the window
    locked_until: float = 0.0
    last_lockout: float = 0.0  # seconds of the last lockout; 0 = never locked (or forgiven)
    quiet_after: float = 0.0  # forgotten once `now` passes this without a new failure


@dataclass(frozen=True)
class Lockout:
    """A new lockout, as returned by `record_failure`."""

    seconds: float
    failures: int  # failures counted in the window when it started (1 for a repeat offence)


class AuthLimiter:
    def __init__(
        self,
        max_failures: int = 10,
        window: float = 60.0,
        lockout: float = 1.0,
        lockout_max: float = 300.0,
        max_peers: int = DEFAULT_MAX_PEERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window <= 0 or lockout <= 0 or lockout_max < lockout or max_peers < 1:
            raise ValueError("AuthLimiter needs max_failures >= 1, window > 0 and 0 < lockout <= lockout_max")
        self.max_failures, self.window, self.lockout, self.lockout_max = max_failures, window, lockout, lockout_max
        self.max_peers = max_peers
        self._clock = clock
        self._peers: OrderedDict[str, _Peer] = OrderedDict()  # least recently failed first
        self._lock = threading.Lock()

    def locked_for(self, peer: str) -> float:
        """Seconds until `peer` may try again; 0.0 when it is not locked out."""
        now = self._clock()
        with self._lock:
            entry = self._peers.get(peer)
            if entry is None:
                return 0.0
            if now >= entry.quiet_after:
                del self._peers[peer]
                return 0.0
            return max(0.0, entry.locked_until - now)

    def record_failure(self, peer: str) -> Lockout | None:
        """Counts a failed authentication; returns the lockout it starts, if it starts one."""
        now = self._clock()
        with self._lock:
            entry = self._peers.get(peer)
            if entry is not None and now >= entry.quiet_after:
                del self._peers[peer]
                entry = None
            if entry is None:
                entry = self._peers[peer] = _Peer()
                while len(self._peers) > self.max_peers:
                    self._peers.popitem(last=False)
            self._peers.move_to_end(peer)
            if now < entry.locked_until:  # raced with another call that locked it: nothing more
                return None
            entry.failures.append(now)
            while entry.failures and entry.failures[0] <= now - self.window:
                entry.failures.popleft()
            lockout = None
            if entry.last_lockout or len(entry.failures) >= self.max_failures:
                seconds = min(self.lockout_max, entry.last_lockout * 2 if entry.last_lockout else self.lockout)
                lockout = Lockout(seconds, len(entry.failures))
                entry.locked_until, entry.last_lockout = now + seconds, seconds
                entry.failures.clear()
            entry.quiet_after = max(now, entry.locked_until) + self.window
            return lockout

    def tracked_peers(self) -> int:
        with self._lock:
            return len(self._peers)
