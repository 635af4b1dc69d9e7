"""Signed, expiring download URLs of call recordings.

A URL ``/recordings/<call_id>.wav?expires=<epoch s>&signature=<hex>`` is its own credential: the
signature is ``HMAC-SHA256(url_key, "maskline/recording-url/v1" NUL call_id NUL expires)`` in 64
lower-case hex digits. ``url_key`` is derived from the tenants' master key (:mod:`api.tenants`)
under its own label, so the master key itself never signs anything a client sees and a URL key
cannot be used to recompute a tenant's access key secret (or the reverse). Rotating the master
key invalidates every URL handed out, as it does every access key.

Verification is constant-time (``hmac.compare_digest``) and fails with one error,
:class:`RecordingUrlError` (HTTP 403), for a tampered, expired or malformed URL alike.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import ClassVar, Final
from urllib.parse import urlencode

from api.errors import ControlError
from media.recording_io import SAFE_CALL_ID

__all__ = [
    "DOWNLOAD_PREFIX",
    "RecordingUrlError",
    "RecordingUrlSigner",
    "SignedUrl",
    "derive_url_key",
]

#: Where the download route lives (``/recordings/<call_id>.wav``).
DOWNLOAD_PREFIX: Final = "/recordings"
_KEY_LABEL: Final = b"maskline/recording-url/v1/key"
_MESSAGE_LABEL: Final = b"maskline/recording-url/v1"
_SIGNATURE: Final = re.compile(r"[0-9a-f]{64}")
# Ten decimal digits reach the year 2286; more is not an expiry we would have issued.
_EXPIRES: Final = re.compile(r"[1-9][0-9]{0,9}")


class RecordingUrlError(ControlError):
    """A download URL that is tampered with, expired or malformed (403 ``FORBIDDEN``)."""

    status: ClassVar[int] = 403

    def __init__(self, message: str) -> None:
        super().__init__("FORBIDDEN", message)


def derive_url_key(master_key: bytes) -> bytes:
    """The 32-byte URL signing key: HMAC-SHA256 of a fixed label under the master key."""
    return hmac.new(master_key, _KEY_LABEL, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class SignedUrl:
    """A signed download URL: ``path`` (with its query) relative to the API's root."""

    call_id: str
    expires: int  # UTC epoch seconds; the URL is refused from this second on
    signature: str

    @property
    def path(self) -> str:
        """``/recordings/<call_id>.wav?expires=...&signature=...``."""
        query = urlencode({"expires": self.expires, "signature": self.signature})
        return f"{DOWNLOAD_PREFIX}/{self.call_id}.wav?{query}"


class RecordingUrlSigner:
    """Signs and verifies download URLs with one URL key (see :func:`derive_url_key`)."""

    __slots__ = ("_key", "ttl_s")

    def __init__(self, url_key: bytes, *, ttl_s: int) -> None:
        if len(url_key) < 32:
            raise ValueError("the URL key must be at least 32 bytes")
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        self._key = url_key
        self.ttl_s = ttl_s

    def _signature(self, call_id: str, expires: int) -> str:
        message = b"\0".join((_MESSAGE_LABEL, call_id.encode("ascii"), str(expires).encode()))
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, call_id: str, *, now: float, ttl_s: int | None = None) -> SignedUrl:
        """A URL for ``call_id`` valid for ``ttl_s`` (default: the signer's) from ``now``."""
        if SAFE_CALL_ID.fullmatch(call_id) is None:
            raise ValueError(f"call id {call_id!r} cannot be put in a download URL")
        lifetime = self.ttl_s if ttl_s is None else ttl_s
        if lifetime <= 0:
            raise ValueError(f"ttl_s must be positive, got {lifetime}")
        expires = int(now) + lifetime
        return SignedUrl(call_id, expires, self._signature(call_id, expires))

    def verify(
        self, call_id: str, expires: str | None, signature: str | None, *, now: float
    ) -> None:
        """Accept a URL's parts or raise :class:`RecordingUrlError`.

        The signature is checked before the expiry, in constant time; a URL is valid while
        ``now < expires``.
        """
        if (
            expires is None
            or signature is None
            or SAFE_CALL_ID.fullmatch(call_id) is None
            or _EXPIRES.fullmatch(expires) is None
            or _SIGNATURE.fullmatch(signature) is None
        ):
            raise RecordingUrlError("malformed recording URL")
        expected = self._signature(call_id, int(expires))
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
            raise RecordingUrlError("invalid recording URL signature")
        if now >= int(expires):
            raise RecordingUrlError("the recording URL has expired")
