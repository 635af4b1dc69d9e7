"""SIP dialogs (RFC 3261 §12): identity, state, route set, remote target, CSeq spaces.

Pure and synchronous: a ``Dialog`` is fed the requests and responses the
endpoint has matched to it and builds the requests the local side sends in it.
It holds no transaction, socket or clock; the endpoint adds the top Via (with a
fresh branch) when it sends a request built here.

State is an ``Enum`` plus one transition table (:data:`DIALOG_TRANSITIONS`);
``Dialog._set_state`` is the only writer and an input missing from the table
raises (:class:`DialogStateError` for local misuse, :class:`~sip.errors.CallDoesNotExist`
for a peer's request the dialog cannot take).  A B2BUA holds two dialogs per
call for thousands of calls, so every class here uses ``__slots__``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from sip.errors import CallDoesNotExist, CSeqOutOfOrder, SipParseError, SipUsageError
from sip.grammar import has_param
from sip.headers import CSEQ_MAX, HeaderList, NameAddr, header_key, make_field
from sip.message import Request, Response
from sip.uri import SipUri, Uri

__all__ = [
    "DIALOG_TRANSITIONS",
    "MAX_FORWARDS",
    "ROLE_FORBIDDEN",
    "TARGET_REFRESH_METHODS",
    "CSeqOutOfOrder",
    "Dialog",
    "DialogId",
    "DialogInput",
    "DialogRole",
    "DialogState",
    "DialogStateError",
]

# RFC 3261 §8.1.1.6: a UAC SHOULD set Max-Forwards to 70.
MAX_FORWARDS: Final = 70

# Methods whose request (and 2xx) replace the remote target: RFC 3261 §12.2
# (INVITE re-INVITE) and RFC 3311 §5.2 (UPDATE).
TARGET_REFRESH_METHODS: Final = frozenset({"INVITE", "UPDATE"})

# Headers the dialog owns in the requests it builds; callers may not pass them
# as extra headers (the endpoint adds Via, the serialiser Content-Length).
_DIALOG_OWNED_KEYS: Final = frozenset(
    {"via", "from", "to", "call-id", "cseq", "route", "content-length"}
)


# --- errors -------------------------------------------------------------------------


class DialogStateError(SipUsageError):
    """The local application fed an input the dialog's state does not allow.

    Our bug, not the peer's (e.g. sending BYE twice, confirming a terminated
    dialog), so it is a ``SipUsageError`` and never becomes a response.
    """

    def __init__(self, message: str, *, state: DialogState, input_: DialogInput) -> None:
        super().__init__(message)
        self.state = state
        self.input = input_


# --- identity -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, init=False)
class DialogId:
    """Dialog identifier (RFC 3261 §12): Call-ID, local tag, remote tag.

    A tag an RFC 2543 peer did not send is the empty string, so every id is
    hashable and comparable without ``None`` cases.
    """

    call_id: str
    local_tag: str
    remote_tag: str

    # An explicit __init__ (the dataclass has init=False): mypyc compiles it, whereas the one
    # dataclasses generates stays interpreted, ~0.2 µs a field on every message.
    def __init__(self, call_id: str, local_tag: str, remote_tag: str) -> None:
        object.__setattr__(self, "call_id", call_id)
        object.__setattr__(self, "local_tag", local_tag)
        object.__setattr__(self, "remote_tag", remote_tag)

    @classmethod
    def for_uas_request(cls, request: Request, local_tag: str) -> DialogId:
        """Id of the dialog a UAS creates for ``request`` with its own ``local_tag`` (§12.1.1)."""
        return DialogId(request.call_id, local_tag, request.from_tag or "")

    @classmethod
    def for_uac_response(cls, response: Response) -> DialogId:
        """Id of the dialog a response to our request belongs to (§12.1.2).

        Local tag is the From tag (ours), remote tag the To tag (the UAS's).
        """
        return DialogId(response.call_id, response.from_tag or "", response.to_tag or "")

    @classmethod
    def for_incoming_request(cls, request: Request) -> DialogId:
        """Id to look up an in-dialog request received from the peer (§12.2.2).

        Local tag is the To tag (ours), remote tag the From tag (the peer's).
        """
        return DialogId(request.call_id, request.to_tag or "", request.from_tag or "")


# --- state machine ------------------------------------------------------------------


class DialogRole(enum.Enum):
    """Which side created the dialog: sender (UAC) or receiver (UAS) of the INVITE."""

    UAC = "UAC"
    UAS = "UAS"

    # Members are singletons compared by identity: the identity hash (in C) serves
    # the transition tables' tuple keys; Enum's own __hash__ is a Python function.
    __hash__ = object.__hash__


class DialogState(enum.Enum):
    """RFC 3261 §12: a dialog is early, confirmed, or gone."""

    EARLY = "EARLY"
    CONFIRMED = "CONFIRMED"
    TERMINATED = "TERMINATED"

    __hash__ = object.__hash__  # see DialogRole


class DialogInput(enum.Enum):
    """Everything that can happen to a dialog.

    ``RECV_*`` come from the peer through :meth:`Dialog.receive_request` and
    :meth:`Dialog.receive_response`; ``SEND_*`` and ``TERMINATE`` from the local
    application through the building methods, :meth:`Dialog.confirm` and
    :meth:`Dialog.terminate`.
    """

    RECV_1XX_WITH_TAG = "RECV_1XX_WITH_TAG"  # provisional carrying the dialog's To tag
    RECV_2XX = "RECV_2XX"  # 2xx to an INVITE (initial or re-INVITE)
    RECV_NON2XX_FINAL = "RECV_NON2XX_FINAL"  # 3xx-6xx to an INVITE (not 481/408)
    RECV_OTHER_FINAL = "RECV_OTHER_FINAL"  # final to a non-INVITE request (not 481/408)
    RECV_481_OR_408 = "RECV_481_OR_408"  # the peer lost the dialog (§12.2.1.2)
    RECV_BYE = "RECV_BYE"
    RECV_ACK = "RECV_ACK"  # ACK for a 2xx we sent
    RECV_REQUEST = "RECV_REQUEST"  # any other in-dialog request (re-INVITE, UPDATE, INFO…)
    SEND_2XX = "SEND_2XX"  # we answered the INVITE with 2xx
    SEND_ACK = "SEND_ACK"  # we acknowledge a 2xx (§13.2.2.4)
    SEND_BYE = "SEND_BYE"
    SEND_REQUEST = "SEND_REQUEST"  # any other in-dialog request
    TERMINATE = "TERMINATE"  # local decision: CANCEL sent, non-2xx sent, timeout, teardown

    __hash__ = object.__hash__  # see DialogRole


_S = DialogState
_I = DialogInput

# The one transition table: (state, input) -> next state.  A pair absent from
# it is illegal.  Responses after termination are absorbed (a 200 to our BYE, a
# retransmitted 2xx, a late answer to an UPDATE), requests are not: the peer
# gets 481 (§12.2.2).
DIALOG_TRANSITIONS: Final[Mapping[tuple[DialogState, DialogInput], DialogState]] = MappingProxyType(
    {
        # -- early (§12.1, §13.2.2.4, §15) --
        (_S.EARLY, _I.RECV_1XX_WITH_TAG): _S.EARLY,
        (_S.EARLY, _I.RECV_2XX): _S.CONFIRMED,
        (_S.EARLY, _I.RECV_NON2XX_FINAL): _S.TERMINATED,  # §12.3: early dialog dies
        (_S.EARLY, _I.RECV_OTHER_FINAL): _S.EARLY,  # PRACK/UPDATE/INFO outcome
        (_S.EARLY, _I.RECV_481_OR_408): _S.TERMINATED,
        (_S.EARLY, _I.RECV_BYE): _S.TERMINATED,  # §15: the caller MAY BYE an early dialog
        (_S.EARLY, _I.RECV_REQUEST): _S.EARLY,  # PRACK, UPDATE (RFC 3311), INFO
        (_S.EARLY, _I.SEND_2XX): _S.CONFIRMED,
        (_S.EARLY, _I.SEND_BYE): _S.TERMINATED,  # UAC only, see ROLE_FORBIDDEN
        (_S.EARLY, _I.SEND_REQUEST): _S.EARLY,
        (_S.EARLY, _I.TERMINATE): _S.TERMINATED,
        # -- confirmed --
        (_S.CONFIRMED, _I.RECV_1XX_WITH_TAG): _S.CONFIRMED,  # re-INVITE ringing
        (_S.CONFIRMED, _I.RECV_2XX): _S.CONFIRMED,  # 2xx retransmission, re-INVITE answer
        (_S.CONFIRMED, _I.RECV_NON2XX_FINAL): _S.CONFIRMED,  # failed re-INVITE: §14.1
        (_S.CONFIRMED, _I.RECV_OTHER_FINAL): _S.CONFIRMED,
        (_S.CONFIRMED, _I.RECV_481_OR_408): _S.TERMINATED,
        (_S.CONFIRMED, _I.RECV_BYE): _S.TERMINATED,
        (_S.CONFIRMED, _I.RECV_ACK): _S.CONFIRMED,
        (_S.CONFIRMED, _I.RECV_REQUEST): _S.CONFIRMED,
        (_S.CONFIRMED, _I.SEND_2XX): _S.CONFIRMED,  # 2xx to a re-INVITE
        (_S.CONFIRMED, _I.SEND_ACK): _S.CONFIRMED,
        (_S.CONFIRMED, _I.SEND_BYE): _S.TERMINATED,
        (_S.CONFIRMED, _I.SEND_REQUEST): _S.CONFIRMED,
        (_S.CONFIRMED, _I.TERMINATE): _S.TERMINATED,
        # -- terminated: absorb late responses; re-ACK a retransmitted 2xx (§13.2.2.4) --
        (_S.TERMINATED, _I.RECV_1XX_WITH_TAG): _S.TERMINATED,
        (_S.TERMINATED, _I.RECV_2XX): _S.TERMINATED,
        (_S.TERMINATED, _I.RECV_NON2XX_FINAL): _S.TERMINATED,
        (_S.TERMINATED, _I.RECV_OTHER_FINAL): _S.TERMINATED,
        (_S.TERMINATED, _I.RECV_481_OR_408): _S.TERMINATED,
        (_S.TERMINATED, _I.SEND_ACK): _S.TERMINATED,
        (_S.TERMINATED, _I.TERMINATE): _S.TERMINATED,
    }
)

# Pairs the table allows in general but a role must not use.
ROLE_FORBIDDEN: Final[frozenset[tuple[DialogRole, DialogState, DialogInput]]] = frozenset(
    {
        # RFC 3261 §15: the callee's UA MUST NOT send a BYE on an early dialog.
        (DialogRole.UAS, _S.EARLY, _I.SEND_BYE),
        # A UAC has no INVITE to answer before its dialog is confirmed.
        (DialogRole.UAC, _S.EARLY, _I.SEND_2XX),
    }
)

del _S, _I

_CSEQ_EXEMPT_METHODS: Final = frozenset({"ACK", "CANCEL"})
_MAX_FORWARDS_FIELD: Final = ("max-forwards", "Max-Forwards", str(MAX_FORWARDS))


# --- the dialog ---------------------------------------------------------------------


class Dialog:
    """One RFC 3261 §12 dialog seen from the local UA.

    Create with :meth:`create_uac` or :meth:`create_uas`.  Public attributes
    are the dialog state of §12: ``id``, ``role``, ``local_cseq`` (0 = empty,
    the first request then uses 1), ``remote_cseq`` (None = empty),
    ``local_uri``/``remote_uri`` (From/To of the dialog without tags),
    ``remote_target``, ``local_contact``, ``route_set`` and ``secure``.
    """

    __slots__ = (
        "_fixed_fields",
        "_state",
        "id",
        "local_contact",
        "local_cseq",
        "local_uri",
        "remote_cseq",
        "remote_target",
        "remote_uri",
        "role",
        "route_set",
        "secure",
    )

    def __init__(
        self,
        *,
        dialog_id: DialogId,
        role: DialogRole,
        state: DialogState,
        local_uri: NameAddr,
        remote_uri: NameAddr,
        local_contact: NameAddr,
        remote_target: Uri,
        route_set: tuple[NameAddr, ...],
        local_cseq: int,
        remote_cseq: int | None,
        secure: bool,
    ) -> None:
        self.id = dialog_id
        self.role = role
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.local_contact = local_contact
        self.remote_target = remote_target
        self.route_set = route_set
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.secure = secure
        self._fixed_fields: tuple[tuple[str, str, str], ...] | None = None
        self._set_state(state)

    # -- creation ----------------------------------------------------------------------

    @classmethod
    def create_uac(cls, request: Request, response: Response) -> Dialog:
        """Dialog of the UAC that sent ``request`` and got ``response`` (RFC 3261 §12.1.2).

        ``response`` must be a 101-199 with a To tag (early dialog) or a 2xx
        (confirmed; an RFC 2543 UAS may omit the tag, which becomes ``""``).
        Route set = Record-Route of the response reversed; remote target =
        the response's Contact URI (the Request-URI if it has none, which only
        a non-conforming UAS sends); local CSeq = the request's.
        """
        status = response.status_code
        if not 101 <= status <= 299 or (status < 200 and not response.to_tag):
            raise SipUsageError(f"a {status} response without a To tag creates no dialog")
        if response.call_id != request.call_id:
            raise SipUsageError("response Call-ID does not match the request")
        contacts = response.contacts
        # The classes by name, not ``cls`` (here and in the other constructors): compiled, a
        # call of a known class is a direct native call, ``cls(...)`` a generic one that
        # parses its keywords.
        return Dialog(
            dialog_id=DialogId(request.call_id, request.from_tag or "", response.to_tag or ""),
            role=DialogRole.UAC,
            state=DialogState.CONFIRMED if status >= 200 else DialogState.EARLY,
            local_uri=_without_params(request.from_),
            remote_uri=_without_params(request.to),
            local_contact=_local_contact_of(request),
            remote_target=contacts[0].uri if contacts else request.uri,
            route_set=tuple(reversed(response.record_routes)),
            local_cseq=request.cseq.seq,
            remote_cseq=None,
            secure=_is_sips(request.uri),
        )

    @classmethod
    def create_uas(
        cls, request: Request, local_tag: str, local_contact: NameAddr | SipUri
    ) -> Dialog:
        """Dialog of the UAS answering ``request`` with To tag ``local_tag`` (RFC 3261 §12.1.1).

        Starts EARLY; :meth:`confirm` when the 2xx is sent.  Route set =
        Record-Route of the request in order; remote target = its Contact
        (mandatory, §8.1.1.8: a request without one raises ``SipParseError``,
        answered 400); remote CSeq = the request's.  The local CSeq starts
        empty, and the first request we send uses 1: §8.1.1.5 allows any
        value below 2**31, and a fixed start keeps dialogs replayable.
        """
        if not local_tag:
            raise SipUsageError("a UAS dialog needs a non-empty local tag")
        if request.to_tag:
            raise SipUsageError("request already carries a To tag: it is in-dialog")
        contacts = request.contacts
        if not contacts:
            raise SipParseError("missing Contact in a dialog-creating request")
        if isinstance(local_contact, SipUri):
            local_contact = NameAddr(uri=local_contact)
        return Dialog(
            dialog_id=DialogId.for_uas_request(request, local_tag),
            role=DialogRole.UAS,
            state=DialogState.EARLY,
            local_uri=_without_params(request.to),
            remote_uri=_without_params(request.from_),
            local_contact=local_contact,
            remote_target=contacts[0].uri,
            route_set=tuple(request.record_routes),
            local_cseq=0,
            remote_cseq=request.cseq.seq,
            secure=_is_sips(request.uri),
        )

    # -- state -------------------------------------------------------------------------

    @property
    def state(self) -> DialogState:
        """Current state (written only by ``_set_state``)."""
        return self._state

    @property
    def call_id(self) -> str:
        """Call-ID of the dialog."""
        return self.id.call_id

    @property
    def local_tag(self) -> str:
        """Our tag (From of our requests)."""
        return self.id.local_tag

    @property
    def remote_tag(self) -> str:
        """The peer's tag, ``""`` for an RFC 2543 peer."""
        return self.id.remote_tag

    @property
    def is_terminated(self) -> bool:
        """True once the dialog is gone; the engine may forget it."""
        return self._state is DialogState.TERMINATED

    def _set_state(self, state: DialogState) -> None:
        # The only writer of ``_state``.
        self._state = state

    def _transition(self, input_: DialogInput, *, received: bool) -> DialogState:
        """Next state for ``input_``, or raise: a missing row is a protocol error."""
        state = self._state
        next_state = DIALOG_TRANSITIONS.get((state, input_))
        if next_state is None or (self.role, state, input_) in ROLE_FORBIDDEN:
            if received:
                # §12.2.2: a request the dialog cannot take in this state does
                # not match any live dialog.
                raise CallDoesNotExist(f"{input_.value} in a {state.value.lower()} dialog")
            raise DialogStateError(
                f"{input_.value} not allowed for a {self.role.value} dialog in {state.value}",
                state=state,
                input_=input_,
            )
        return next_state

    def _fire(self, input_: DialogInput, *, received: bool = False) -> DialogState:
        """Apply ``input_`` through the table; return the new state."""
        next_state = self._transition(input_, received=received)
        self._set_state(next_state)
        return next_state

    def confirm(self) -> None:
        """The local UAS sent a 2xx to the INVITE: early → confirmed (§12.1.1)."""
        self._fire(DialogInput.SEND_2XX)

    def terminate(self) -> None:
        """End the dialog locally (CANCEL or non-2xx sent, timeout, teardown); idempotent."""
        self._fire(DialogInput.TERMINATE)

    # -- receiving ---------------------------------------------------------------------

    def receive_request(self, request: Request) -> None:
        """Account for an in-dialog request from the peer (RFC 3261 §12.2.2).

        Raises ``CallDoesNotExist`` (481) if the dialog cannot take it (it is
        terminated, or a stray ACK reaches an early dialog; never answer an
        ACK) and ``CSeqOutOfOrder`` (500) if its CSeq does not advance.  Then
        records the remote CSeq, takes a target refresh's Contact as the new
        remote target, and a BYE terminates the dialog.  The state is unchanged
        when it raises.
        """
        self._check_ids(request.call_id, request.to_tag, request.from_tag)
        method = request.method
        if method == "BYE":
            input_ = DialogInput.RECV_BYE
        elif method == "ACK":
            input_ = DialogInput.RECV_ACK
        else:
            input_ = DialogInput.RECV_REQUEST
        next_state = self._transition(input_, received=True)
        if method not in _CSEQ_EXEMPT_METHODS:
            seq = request.cseq.seq
            if self.remote_cseq is not None and seq <= self.remote_cseq:
                raise CSeqOutOfOrder(f"{seq} after {self.remote_cseq}")
            self.remote_cseq = seq
        if method in TARGET_REFRESH_METHODS:
            contacts = request.contacts
            if contacts:
                self.remote_target = contacts[0].uri
        self._set_state(next_state)

    def receive_response(self, request_method: str, response: Response) -> None:
        """Account for a response to a request we sent in this dialog (RFC 3261 §12.2.1.2).

        A 2xx to an INVITE confirms an early dialog, and a UAC then recomputes
        the route set from it (§13.2.2.4); a 2xx to a target refresh with a
        Contact replaces the remote target; a non-2xx final to the INVITE ends
        an early dialog; 481 or 408 to any request ends the dialog (report a
        transaction timeout as 408, §8.1.3.1).  A provisional without a To tag
        carries no dialog information and is ignored.  Responses after
        termination are absorbed.
        """
        status = response.status_code
        if status < 200 and not response.to_tag:
            return
        self._check_ids(response.call_id, response.from_tag, response.to_tag)
        is_invite = request_method == "INVITE"
        if status < 200:
            input_ = DialogInput.RECV_1XX_WITH_TAG
        elif status in (481, 408):
            input_ = DialogInput.RECV_481_OR_408
        elif not is_invite:
            input_ = DialogInput.RECV_OTHER_FINAL
        elif status < 300:
            input_ = DialogInput.RECV_2XX
        else:
            input_ = DialogInput.RECV_NON2XX_FINAL
        previous = self._state
        next_state = self._transition(input_, received=False)
        if next_state is not DialogState.TERMINATED and 200 <= status < 300:
            if is_invite and previous is DialogState.EARLY and self.role is DialogRole.UAC:
                # §13.2.2.4: the route set MUST be recomputed from the 2xx.
                self.route_set = tuple(reversed(response.record_routes))
            if request_method in TARGET_REFRESH_METHODS:
                contacts = response.contacts
                if contacts:
                    self.remote_target = contacts[0].uri
        self._set_state(next_state)

    def _check_ids(self, call_id: str, local_tag: str | None, remote_tag: str | None) -> None:
        # The endpoint demultiplexes by DialogId; a mismatch here is its bug.
        dialog_id = self.id
        if (
            call_id != dialog_id.call_id
            or (local_tag or "") != dialog_id.local_tag
            or (remote_tag or "") != dialog_id.remote_tag
        ):
            raise SipUsageError("message does not belong to this dialog")

    # -- building requests -------------------------------------------------------------

    def create_request(
        self,
        method: str,
        *,
        extra_headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """Build an in-dialog request (RFC 3261 §12.2.1.1), without Via.

        CSeq is the local CSeq incremented; a BYE terminates the dialog
        (§15.1.1).  INVITE and UPDATE carry our Contact (target refresh).  ACK
        is built by :meth:`create_ack`, CANCEL by ``sip.builders.make_cancel``.
        """
        if method in _CSEQ_EXEMPT_METHODS:
            raise SipUsageError(f"{method} is not built by create_request")
        input_ = DialogInput.SEND_BYE if method == "BYE" else DialogInput.SEND_REQUEST
        next_state = self._transition(input_, received=False)
        if self.local_cseq >= CSEQ_MAX:
            raise SipUsageError("local CSeq space exhausted (§8.1.1.5: below 2**31)")
        request = self._build(
            method,
            self.local_cseq + 1,
            extra_headers=extra_headers,
            body=body,
            content_type=content_type,
        )
        self.local_cseq += 1
        self._set_state(next_state)
        return request

    def create_ack(
        self,
        invite_cseq: int,
        *,
        extra_headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """Build the ACK for a 2xx to our INVITE with CSeq number ``invite_cseq`` (§13.2.2.4).

        Same Request-URI and Route as any in-dialog request, CSeq number of the
        INVITE; no Contact.  Allowed once the dialog is confirmed, and after
        termination too, as every retransmitted 2xx must be acknowledged.
        """
        if not 0 <= invite_cseq <= self.local_cseq:
            raise SipUsageError(f"CSeq {invite_cseq} was never sent in this dialog")
        next_state = self._transition(DialogInput.SEND_ACK, received=False)
        request = self._build(
            "ACK",
            invite_cseq,
            extra_headers=extra_headers,
            body=body,
            content_type=content_type,
        )
        self._set_state(next_state)
        return request

    def _build(
        self,
        method: str,
        seq: int,
        *,
        extra_headers: list[tuple[str, str]] | None,
        body: bytes,
        content_type: str | None,
    ) -> Request:
        extra = extra_headers or []
        extra_keys = {header_key(name) for name, _ in extra}
        owned = extra_keys & _DIALOG_OWNED_KEYS
        if owned:
            raise SipUsageError(f"the dialog sets {', '.join(sorted(owned))} itself")
        if content_type is not None and "content-type" in extra_keys:
            raise SipUsageError("Content-Type given twice")
        if body and content_type is None and "content-type" not in extra_keys:
            # §7.4.1: a body needs a Content-Type.
            raise SipUsageError("a body needs a content_type")

        request_uri, routes = self._request_uri_and_routes()
        fixed = self._fixed_fields
        if fixed is None:
            fixed = self._fixed_fields = self._render_fixed_fields()
        headers = HeaderList(
            [
                _MAX_FORWARDS_FIELD,
                *[make_field("Route", route) for route in routes],
                *fixed,
                ("cseq", "CSeq", f"{seq} {method}"),
            ]
        )
        if method in TARGET_REFRESH_METHODS and "contact" not in extra_keys:
            # §12.2.1.1: a target refresh request carries the local contact.
            headers.add("Contact", str(self.local_contact))
        for name, value in extra:
            headers.add(name, value)
        if content_type is not None and body:
            headers.add("Content-Type", content_type)
        headers.add("Content-Length", str(len(body)))
        return Request(method, request_uri, headers, body)

    def _render_fixed_fields(self) -> tuple[tuple[str, str, str], ...]:
        """From, To and Call-ID of every request we build, rendered once: the URIs, the
        tags and the Call-ID of a dialog never change.  ``make_field`` refuses a value
        with CR or LF as ``HeaderList.add`` would."""
        remote_tag = self.id.remote_tag
        to = self.remote_uri.with_tag(remote_tag) if remote_tag else self.remote_uri
        return (
            make_field("From", str(self.local_uri.with_tag(self.id.local_tag))),
            make_field("To", str(to)),
            make_field("Call-ID", self.id.call_id),
        )

    def _request_uri_and_routes(self) -> tuple[Uri, list[str]]:
        """Request-URI and Route values per §12.2.1.1 (loose or strict routing)."""
        target = _as_request_uri(self.remote_target)
        if not self.route_set:
            return target, []
        first = self.route_set[0].uri
        if isinstance(first, SipUri) and has_param(first.params, "lr"):
            # Loose routing: R-URI = remote target, Route = route set as is.
            return target, [str(route) for route in self.route_set]
        # Strict routing (last paragraphs of §12.2.1.1): the first route becomes
        # the R-URI, the rest plus the remote target become Route.
        routes = [str(route) for route in self.route_set[1:]]
        routes.append(f"<{self.remote_target}>")
        return _as_request_uri(first), routes

    def __repr__(self) -> str:
        return (
            f"<Dialog {self.role.value} {self._state.value} call_id={self.id.call_id!r} "
            f"local_tag={self.id.local_tag!r} remote_tag={self.id.remote_tag!r}>"
        )


# --- helpers ------------------------------------------------------------------------


def _without_params(address: NameAddr) -> NameAddr:
    """Display name and URI only: the dialog's local/remote URI carries no tag (§12.1)."""
    if address.params:
        _ = address.uri  # a malformed URI is refused here (SipParseError), as it always was
    return address.without_params()


def _local_contact_of(request: Request) -> NameAddr:
    contacts = request.contacts
    if not contacts:
        raise SipUsageError("our dialog-creating request carries no Contact (§8.1.1.8)")
    return contacts[0]


def _is_sips(uri: Uri) -> bool:
    # §12.1.1/§12.1.2: secure when the Request-URI is SIPS (we do not see the
    # transport here; a sips: R-URI is only ever sent over TLS).
    return isinstance(uri, SipUri) and uri.scheme == "sips"


def _as_request_uri(uri: Uri) -> Uri:
    """Strip what RFC 3261 §19.1.1 Table 1 forbids in a Request-URI: ``method`` and headers."""
    if not isinstance(uri, SipUri):
        return uri
    if not uri.headers and not has_param(uri.params, "method"):
        return uri
    params = {k: v for k, v in uri.params.items() if k.lower() != "method"}
    return dataclasses.replace(uri, params=params, headers={})
