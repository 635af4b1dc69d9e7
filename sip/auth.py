"""HTTP Digest for SIP client challenges (RFC 3261 §22, RFC 2617, RFC 7616 MD5 and SHA-256).

Pure: parse a ``WWW-Authenticate``/``Proxy-Authenticate`` challenge and compute the
``Authorization``/``Proxy-Authorization`` value answering it.  The client nonce is passed in so
the result is reproducible in tests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sip.builders import random_hex
from sip.errors import SipError, SipParseError
from sip.grammar import parse_quoted_string, split_quoted
from sip.message import Request, Response

_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """The parameters of one Digest challenge."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    opaque: str | None = None
    qop: tuple[str, ...] = ()
    stale: bool = False


def parse_challenge(value: str) -> DigestChallenge:
    """Parse ``Digest realm="…", nonce="…", …``; other schemes raise ``SipParseError``."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipParseError(f"unsupported authentication scheme {scheme!r}")
    params: dict[str, str] = {}
    for item in split_quoted(rest, ","):
        name, eq, raw = item.strip().partition("=")
        if not eq:
            continue
        raw = raw.strip()
        params[name.strip().lower()] = parse_quoted_string(raw, 0)[0] if raw[:1] == '"' else raw
    if "realm" not in params or "nonce" not in params:
        raise SipParseError("Digest challenge without realm or nonce")
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in _HASHES:
        raise SipParseError(f"unsupported Digest algorithm {algorithm!r}")
    qop = tuple(q.strip() for q in params.get("qop", "").split(",") if q.strip())
    return DigestChallenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=algorithm,
        opaque=params.get("opaque"),
        qop=qop,
        stale=params.get("stale", "").lower() == "true",
    )


def authorization(
    challenge: DigestChallenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nonce_count: int = 1,
) -> str:
    """The credentials answering ``challenge`` for a request ``method uri`` (RFC 2617 §3.2.2)."""
    digest = _HASHES[challenge.algorithm]

    def h(text: str) -> str:
        return digest(text.encode("utf-8")).hexdigest()

    ha1 = h(f"{username}:{challenge.realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    fields = [
        f'username="{username}"',
        f'realm="{challenge.realm}"',
        f'nonce="{challenge.nonce}"',
        f'uri="{uri}"',
    ]
    if "auth" in challenge.qop:
        nc = f"{nonce_count:08x}"
        response = h(f"{ha1}:{challenge.nonce}:{nc}:{cnonce}:auth:{ha2}")
        fields += [f'response="{response}"', "qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
    else:
        fields.append(f'response="{h(f"{ha1}:{challenge.nonce}:{ha2}")}"')
    fields.append(f"algorithm={challenge.algorithm}")
    if challenge.opaque is not None:
        fields.append(f'opaque="{challenge.opaque}"')
    return "Digest " + ", ".join(fields)


def answer_challenge(
    response: Response, request: Request, *, username: str, password: str
) -> tuple[str, str] | None:
    """The header (``Authorization`` for a 401, ``Proxy-Authorization`` for a 407) and the
    credentials that answer ``response``'s Digest challenge to ``request`` (RFC 3261 §22.2);
    None when the response carries no challenge we can read."""
    proxy = response.status_code == 407
    value = response.headers.get("Proxy-Authenticate" if proxy else "WWW-Authenticate")
    if value is None:
        return None
    try:
        challenge = parse_challenge(value)
    except SipError:
        return None
    credentials = authorization(
        challenge,
        method=request.method,
        uri=str(request.uri),
        username=username,
        password=password,
        cnonce=random_hex(8),
    )
    return ("Proxy-Authorization" if proxy else "Authorization"), credentials
