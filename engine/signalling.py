"""Dispatch of endpoint events: OPTIONS answered here, calls handed to the B2BUA, text
messages (MESSAGE outside a dialog, and the responses to those we send) to the SMS gateway.

The UAS checks of RFC 3261 §8.2 (405/501/416/420/415/483) already happened in
``sip.uas``.  Without a B2BUA (tests of the bare SIP core) INVITEs are refused
with 480 and in-dialog requests with 481.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from engine.logging import get_logger
from engine.sms_gateway import SmsGateway
from sip.endpoint import Endpoint
from sip.events import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
    TransportFailed,
)

_log = get_logger("engine.signalling")

USER_AGENT = "maskline"

Clock = Callable[[], float]


class CallControl(Protocol):
    """Who calls are handed to: ``engine.b2bua.B2bua``. A protocol, not that class: this module
    is compiled (build_compiled.py), and a compiled attribute typed with a class accepts only
    instances of it — tests put stand-ins here."""

    def on_invite(self, event: RequestReceived) -> None: ...

    def on_in_dialog(self, event: RequestReceived) -> bool: ...

    def on_cancel(self, event: CancelReceived) -> None: ...

    def on_response(self, event: ResponseReceived) -> None: ...

    def on_ack(self, event: AckReceived) -> None: ...

    def on_timeout(self, event: TransactionTimedOut | TransportFailed) -> None: ...


class Signalling:
    """Drains endpoint events and answers them."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        clock: Clock,
        b2bua: CallControl | None = None,
        sms: SmsGateway | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._clock = clock
        self.b2bua = b2bua
        self.sms = sms

    def handle_events(self) -> None:
        """Answer every pending event of the endpoint."""
        endpoint = self.endpoint
        while (event := endpoint.next_event()) is not None:
            b2bua = self.b2bua
            sms = self.sms
            if isinstance(event, RequestReceived):
                self._on_request(event)
            elif (
                sms is not None
                and not isinstance(event, AckReceived | CancelReceived)
                and event.tx_key in sms.sending  # what sms.owns() says, without its frame
            ):
                # Our MESSAGEs' client transactions: never the B2BUA's business.
                if isinstance(event, ResponseReceived):
                    sms.on_response(event)
                else:
                    sms.on_failure(event)
            elif b2bua is None:
                if isinstance(event, CancelReceived):
                    response = endpoint.response_for(event.invite_tx_key, 487)
                    endpoint.send_response(event.invite_tx_key, response, self._clock())
            elif isinstance(event, CancelReceived):
                b2bua.on_cancel(event)
            elif isinstance(event, ResponseReceived):
                b2bua.on_response(event)
            elif isinstance(event, AckReceived):
                b2bua.on_ack(event)
            else:
                b2bua.on_timeout(event)

    def _on_request(self, event: RequestReceived) -> None:
        endpoint = self.endpoint
        request = event.request
        policy = endpoint.policy
        if request.method == "OPTIONS" and not event.in_dialog:
            response = endpoint.response_for(event.tx_key, 200)
            headers = response.headers
            headers.add("Allow", policy.allow_header)
            headers.add("Accept", policy.accept_header)
            headers.add("Supported", policy.supported_header)
            headers.add("Server", USER_AGENT)
        elif self.b2bua is not None and request.method == "INVITE" and not event.in_dialog:
            self.b2bua.on_invite(event)
            return
        elif self.sms is not None and request.method == "MESSAGE" and not event.in_dialog:
            self.sms.on_message(event)
            return
        elif self.b2bua is not None and event.in_dialog and self.b2bua.on_in_dialog(event):
            return
        elif event.in_dialog or request.method != "INVITE":
            # No call owns this dialog (§12.2.2), or a method we do not serve outside one.
            response = endpoint.response_for(event.tx_key, 481)
        else:
            # No B2BUA attached (bare SIP core): say so plainly.
            response = endpoint.response_for(
                event.tx_key, 480, "Temporarily Unavailable (no call routing)"
            )
        _log.debug(
            "request_answered",
            method=request.method,
            status=response.status_code,
            call_id=request.call_id,
            peer=f"{event.peer.host}:{event.peer.port}",
        )
        endpoint.send_response(event.tx_key, response, self._clock())
