"""UAS request inspection of RFC 3261 §8.2, as a pure function of a request and a policy.

The endpoint runs it on every new request before the application sees it, so
the application only ever receives requests it can act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sip.builders import make_response
from sip.message import Request, Response
from sip.parser import KNOWN_METHODS

DEFAULT_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "PRACK", "UPDATE", "INFO"}
)


@dataclass(frozen=True, slots=True)
class UasPolicy:
    """What this UAS implements; used to answer what it does not."""

    allowed_methods: frozenset[str] = DEFAULT_METHODS
    supported_extensions: frozenset[str] = frozenset()
    accepted_content_types: frozenset[str] = field(
        default_factory=lambda: frozenset({"application/sdp"})
    )
    # Methods whose bodies are of other types than ``accepted_content_types`` (a MESSAGE carries
    # text, never SDP): for these methods only the listed types are taken.
    content_types_by_method: Mapping[str, frozenset[str]] = field(default_factory=dict)
    uri_schemes: frozenset[str] = frozenset({"sip", "sips", "tel"})
    # RFC 7332 §5: a B2BUA copies and decrements Max-Forwards; at 0 only
    # requests answered locally (OPTIONS) are served, the rest get 483.
    local_methods: frozenset[str] = frozenset({"OPTIONS"})

    @property
    def allow_header(self) -> str:
        """Value for the Allow header, in a stable order."""
        return ", ".join(sorted(self.allowed_methods))

    @property
    def accept_header(self) -> str:
        """Value for the Accept header."""
        return ", ".join(sorted(self.accepted_content_types))

    def content_types_for(self, method: str) -> frozenset[str]:
        """Body types a ``method`` request may carry."""
        return self.content_types_by_method.get(method, self.accepted_content_types)

    def accept_header_for(self, method: str) -> str:
        """Value for the Accept header of a 415 to a ``method`` request."""
        return ", ".join(sorted(self.content_types_for(method)))

    @property
    def supported_header(self) -> str:
        """Value for the Supported header (may be empty)."""
        return ", ".join(sorted(self.supported_extensions))


def check_request(request: Request, policy: UasPolicy, *, to_tag: str) -> Response | None:
    """Return the error response a UAS must send for ``request``, or None when it may proceed.

    Order follows RFC 3261 §8.2: method (§8.2.1), URI scheme (§8.2.2.1),
    Require (§8.2.2.3), content (§8.2.3).  ``request.validate()`` must have
    passed.  ACK is never answered.
    """
    method = request.method
    if method == "ACK":
        return None
    if method not in policy.allowed_methods:
        status = 405 if method in KNOWN_METHODS else 501
        return make_response(request, status, to_tag=to_tag, extra=[("Allow", policy.allow_header)])
    if request.uri.scheme.lower() not in policy.uri_schemes:
        return make_response(request, 416, to_tag=to_tag)
    if method != "CANCEL":
        unsupported = [tag for tag in request.require if tag not in policy.supported_extensions]
        if unsupported:
            return make_response(
                request, 420, to_tag=to_tag, extra=[("Unsupported", ", ".join(unsupported))]
            )
    if request.max_forwards == 0 and method not in policy.local_methods and method != "CANCEL":
        return make_response(request, 483, to_tag=to_tag)
    if request.body:
        encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
        content_type = request.content_type
        accepted = policy.content_types_for(method)
        if content_type is None or content_type not in accepted or encoding != "identity":
            accept = policy.accept_header_for(method)
            # A method with its own types says which in the reason: the sender of an
            # application/vnd.3gpp.sms MESSAGE reads why, not just that, it was refused.
            reason = (
                f"Unsupported Media Type ({method} takes {accept} only)"
                if method in policy.content_types_by_method and encoding == "identity"
                else None
            )
            return make_response(
                request,
                415,
                reason,
                to_tag=to_tag,
                extra=[("Accept", accept), ("Accept-Encoding", "identity")],
            )
    if method == "INVITE" and not _accepts_sdp(request):
        # We can only answer an INVITE with SDP (RFC 4475 §3.3.15).
        return make_response(
            request,
            406,
            to_tag=to_tag,
            extra=[("Warning", '399 maskline "only application/sdp answers are possible"')],
        )
    return None


def _accepts_sdp(request: Request) -> bool:
    values = request.headers.get_list("Accept")
    if not request.headers.get_all("Accept"):
        return True  # no Accept header means application/sdp (RFC 3261 §20.1)
    for value in values:
        media = value.split(";", 1)[0].strip().lower()
        if media in ("application/sdp", "application/*", "*/*", ""):
            return True
    return False
