"""Replay protection of the RPC API: signature nonces remembered per access key.

DYPLSAPI.md §3 step 4: a nonce must be unseen for its access key over at least twice the
±15 minute timestamp window (the reference remembers ~31 minutes). A request stamped ``T`` is
accepted while the server clock is within ``T ± 15 min``, so a nonce first seen at server time
``t`` can only be replayed successfully until ``t + 30 min``: remembering each nonce for
:data:`NONCE_TTL_S` (31 minutes) from its first sighting closes the window with a margin.

Memory is bounded: entries expire (each key's entries are kept in arrival order and pruned from
the front on every use of the key, and all keys are swept at most once a minute), and each key
holds at most ``max_per_key`` live nonces. When a key reaches that cap the request is *refused*
(``Throttling.User``, like the reference's flow control) rather than forgetting an older nonce,
because forgetting would reopen a replay window. The default cap (200,000 per key over
31 minutes, ~107 requests/s sustained per key) costs at most ~40 MB per key at the cap.

Only nonces of requests whose signature verified are recorded (the caller's duty): otherwise
anyone could fill a key's memory with forged requests.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from api.rpc_signing import RpcSignatureError, nonce_used_error

__all__ = ["DEFAULT_MAX_PER_KEY", "NONCE_TTL_S", "NonceCache", "throttled_error"]

#: How long a nonce is remembered from its first sighting (2 × 15 min + 1 min margin).
NONCE_TTL_S: Final = 31 * 60.0
#: Live nonces per access key before requests of that key are refused.
DEFAULT_MAX_PER_KEY: Final = 200_000
# Full sweep of idle keys at most this often (seconds of the clock given to ``use``).
_SWEEP_EVERY_S: Final = 60.0


def throttled_error() -> RpcSignatureError:
    """DYPLSAPI.md §5 flow-control refusal (``400 Throttling.User``)."""
    return RpcSignatureError("Throttling.User", "Request was denied due to user flow control.", 400)


class _KeyNonces:
    """The live nonces of one access key: a set for lookups, a queue in arrival order."""

    __slots__ = ("order", "seen")

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}  # nonce → expiry (epoch s)
        self.order: deque[tuple[float, str]] = deque()

    def prune(self, now: float) -> None:
        order = self.order
        seen = self.seen
        while order and order[0][0] <= now:
            expiry, nonce = order.popleft()
            if seen.get(nonce) == expiry:
                del seen[nonce]


class NonceCache:
    """Signature nonces seen per access key, each remembered for ``ttl_s`` seconds.

    Not thread-safe; meant for one event loop (``use`` never awaits, so it is atomic there).
    """

    def __init__(
        self, *, ttl_s: float = NONCE_TTL_S, max_per_key: int = DEFAULT_MAX_PER_KEY
    ) -> None:
        if ttl_s <= 0 or max_per_key < 1:
            raise ValueError("ttl_s must be > 0 and max_per_key >= 1")
        self.ttl_s = ttl_s
        self.max_per_key = max_per_key
        self._keys: dict[str, _KeyNonces] = {}
        self._last_sweep = float("-inf")

    def __len__(self) -> int:
        """Live nonces over all keys (expired ones may linger until the next prune)."""
        return sum(len(entry.seen) for entry in self._keys.values())

    def use(self, access_key_id: str, nonce: str, now: float) -> None:
        """Record ``nonce`` for ``access_key_id`` at ``now`` (epoch seconds).

        Raises ``SignatureNonceUsed`` if it was seen within ``ttl_s``, ``Throttling.User`` if the
        key already holds ``max_per_key`` live nonces (nothing is recorded then).
        """
        if now - self._last_sweep >= _SWEEP_EVERY_S:
            self._sweep(now)
        entry = self._keys.get(access_key_id)
        if entry is None:
            entry = self._keys[access_key_id] = _KeyNonces()
        else:
            entry.prune(now)
        expiry = entry.seen.get(nonce)
        if expiry is not None and expiry > now:
            raise nonce_used_error()
        if len(entry.seen) >= self.max_per_key:
            raise throttled_error()
        expiry = now + self.ttl_s
        entry.seen[nonce] = expiry
        entry.order.append((expiry, nonce))

    def _sweep(self, now: float) -> None:
        """Prune every key and drop keys left empty."""
        self._last_sweep = now
        for key in list(self._keys):
            entry = self._keys[key]
            entry.prune(now)
            if not entry.seen:
                del self._keys[key]
