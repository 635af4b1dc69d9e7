"""The shortcuts of the message layer give the answers of the long way.

Each fast path (the first-value index of ``HeaderList``, per-header invalidation of
parsed views, the angle-bracket name-addr pattern, the regex checks in ``escape`` and
URI parameter rendering, ``check_uri``, the CSeq memo, pooled random ids) is compared
with a plain reference: a list scan, a fresh parse, the general parser, a character
loop.
"""

from __future__ import annotations

import os
import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip import HeaderList, Request, SipParseError, SipUri, Via, parse_message
from sip.builders import (
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    random_bytes,
    random_hex,
)
from sip.dialog import DialogInput, DialogRole, DialogState
from sip.errors import SipUsageError
from sip.grammar import escape
from sip.headers import (
    CSeq,
    _parse_name_addr_general,
    header_key,
    parse_cseq,
    parse_name_addr,
)
from sip.uri import _PARAM_SAFE, _USER_SAFE, _render_uri_params, check_uri, parse_uri

# --- HeaderList: the first-value index against a plain list model ------------------------

NAMES = ["Via", "v", "VIA", "From", "f", "To", "Call-ID", "i", "CSeq", "X-Custom", "x-custom"]
values = st.text("ab ;=<>,", max_size=6)
operations = st.lists(
    st.tuples(
        st.sampled_from(["add", "insert_first", "replace_first", "set", "remove", "copy"]),
        st.sampled_from(NAMES),
        values,
    ),
    max_size=25,
)


def _model_apply(model: list[tuple[str, str]], op: str, name: str, value: str) -> None:
    """The same operation on a list of (key, value), written the obvious way."""
    key = header_key(name)
    positions = [i for i, (k, _) in enumerate(model) if k == key]
    if op == "add":
        model.append((key, value))
    elif op == "insert_first":
        model.insert(positions[0] if positions else 0, (key, value))
    elif op == "replace_first":
        if positions:
            model[positions[0]] = (key, value)
        else:
            model.append((key, value))
    elif op == "set":
        if positions:
            model[positions[0]] = (key, value)
            for i in reversed(positions[1:]):
                del model[i]
        else:
            model.append((key, value))
    elif op == "remove":
        model[:] = [(k, v) for k, v in model if k != key]


@settings(max_examples=300)
@given(operations)
def test_header_list_lookups_match_a_scan_after_any_changes(
    ops: list[tuple[str, str, str]],
) -> None:
    headers = HeaderList()
    model: list[tuple[str, str]] = []
    for op, name, value in ops:
        if op == "copy":
            source = HeaderList()
            source.add(name, value)
            source.add("Max-Forwards", "70")
            headers.copy_from(source, (header_key(name),))
            model.append((header_key(name), value))
            headers = headers.copy()  # the copy keeps the index too
            continue
        if op == "remove":
            headers.remove(name)
        else:
            getattr(headers, op)(name, value)
        _model_apply(model, op, name, value)
    assert [(header_key(n), v) for n, v in headers] == model
    assert len(headers) == len(model)
    for name in NAMES:
        key = header_key(name)
        wanted = [v for k, v in model if k == key]
        assert headers.get(name) == (wanted[0] if wanted else None)
        assert headers.get_all(name) == wanted
        assert headers.count(name) == len(wanted)
        assert (name in headers) == bool(wanted)
    assert headers.has_repeats() == (len({k for k, _ in model}) != len(model))


def test_header_list_from_fields_keeps_the_first_of_a_repeated_key() -> None:
    headers = HeaderList([("via", "Via", "first"), ("to", "To", "t"), ("via", "Via", "second")])
    assert headers.get("Via") == "first"
    assert headers.first_values() == {"via": "first", "to": "t"}
    assert headers.has_repeats()


def test_subset_of_copies_the_listed_fields_verbatim_in_order() -> None:
    source = HeaderList()
    for name, value in [("Via", "a"), ("Max-Forwards", "70"), ("Via", "b"), ("To", "<sip:x@y>")]:
        source.add(name, value)
    subset = HeaderList.subset_of(source, frozenset({"via", "to"}))
    assert list(subset) == [("Via", "a"), ("Via", "b"), ("To", "<sip:x@y>")]
    assert subset.get("Via") == "a" and "Max-Forwards" not in subset


def test_add_still_refuses_injected_lines_and_non_token_names() -> None:
    headers = HeaderList()
    with pytest.raises(SipUsageError):
        headers.add("X-Test", "a\r\nVia: evil")
    with pytest.raises(SipUsageError):
        headers.add("Bad Name", "x")
    assert len(headers) == 0


# --- parsed views: a change drops the views of the changed header only ------------------

INVITE = (
    b"INVITE sip:13800000001@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-1-0;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:13900000000@127.0.0.1:5061>;tag=abc\r\n"
    b"To: <sip:13800000001@127.0.0.1:5060>\r\n"
    b"Call-ID: 1-1@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:13900000000@127.0.0.1:5061;transport=udp>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_a_changed_via_is_reparsed_while_from_and_to_stay_cached() -> None:
    request = parse_message(INVITE)
    from_before, to_before, cseq_before = request.from_, request.to, request.cseq
    assert request.top_via.branch == "z9hG4bK-1-1-0"
    assert len(request.vias) == 1
    request.headers.replace_first("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew")
    assert request.top_via.branch == "z9hG4bKnew"
    assert [via.host for via in request.vias] == ["10.0.0.1"]
    assert request.from_ is from_before and request.to is to_before
    assert request.cseq is cseq_before
    request.headers.set("To", "<sip:other@127.0.0.1>;tag=t2")
    assert request.to_tag == "t2" and request.from_ is from_before
    request.headers.insert_first("Via", "SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKtop")
    assert [via.host for via in request.vias] == ["10.0.0.2", "10.0.0.1"]
    request.headers.remove("Contact")
    assert request.contacts == []


def test_vias_across_lines_reuse_the_parsed_top_line() -> None:
    data = INVITE.replace(
        b"Max-Forwards",
        b"Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKb, SIP/2.0/UDP h2\r\nMax-Forwards",
    )
    request = parse_message(data)
    top = request.top_via
    assert [via.host for via in request.vias] == ["127.0.0.1", "10.0.0.9", "h2"]
    assert request.vias[0] is top


# --- name-addr: the angle-bracket pattern against the general parser --------------------

addr_text = st.builds(
    lambda uri, params: f"<{uri}>{params}",
    st.text('sip:ab@.1;=%"<> \t', min_size=0, max_size=14),
    st.text('tag=;ab"x ,', max_size=12).map(lambda t: ";" + t if t else ""),
)


@settings(max_examples=300)
@given(addr_text)
def test_angle_addresses_parse_as_the_general_parser_says(text: str) -> None:
    try:
        expected = _parse_name_addr_general(text)
    except SipParseError:
        expected = None
    try:
        got = parse_name_addr(text)
    except SipParseError:
        got = None
    if expected is None:
        # What the general parser refuses, the fast pattern refuses too.
        assert got is None
        return
    assert got is not None
    assert (got.display, got.params, str(got)) == (expected.display, expected.params, str(expected))


def test_a_parsed_address_renders_its_uri_as_received_even_once_parsed() -> None:
    address = parse_name_addr("<sip:%61lice@example.com;lr>;tag=1")
    before = str(address)
    assert address.uri == SipUri(host="example.com", user="alice", params={"lr": None})
    assert str(address) == before == "<sip:%61lice@example.com;lr>;tag=1"
    assert str(address.with_tag("2")) == "<sip:%61lice@example.com;lr>;tag=2"
    assert str(address.without_params()) == "<sip:%61lice@example.com;lr>"


# --- escaping and URI checks against the plain definitions ------------------------------

escape_text = st.text("aZ09-_.!~*'()&=+$,;?/:[]%@ \x00é大\U0001f600\udcff", max_size=12)


def _escape_by_hand(text: str, safe: frozenset[str]) -> str:
    return "".join(
        ch if ch in safe else "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
        for ch in text
    )


@settings(max_examples=300)
@given(escape_text)
def test_escape_matches_the_character_loop(text: str) -> None:
    for safe in (_USER_SAFE, _PARAM_SAFE):
        assert escape(text, safe) == _escape_by_hand(text, safe)


@settings(max_examples=300)
@given(st.dictionaries(escape_text.filter(bool), st.none() | escape_text, max_size=3))
def test_uri_parameters_render_escaped_exactly_when_needed(params: dict[str, str | None]) -> None:
    expected = "".join(
        f";{_escape_by_hand(k, _PARAM_SAFE)}"
        + ("" if v is None else f"={_escape_by_hand(v, _PARAM_SAFE)}")
        for k, v in params.items()
    )
    assert _render_uri_params(params) == expected


uri_candidates = st.text('sip:ab@.1;=%?&[]:5 \t<>"tel', max_size=16) | st.sampled_from(
    ["sip:a@127.0.0.1:5060", "sip:a@h:99999", "sip:h;lr", "sip:[::1]:5060", "sip:a@h?x=y", ""]
)


@settings(max_examples=400)
@given(uri_candidates)
def test_check_uri_refuses_exactly_what_parse_uri_refuses(text: str) -> None:
    try:
        parse_uri(text)
        parses = True
    except SipParseError:
        parses = False
    try:
        check_uri(text)
        checks = True
    except SipParseError:
        checks = False
    assert checks == parses


def test_validate_still_refuses_a_bad_from_uri() -> None:
    request = parse_message(INVITE.replace(b"<sip:13900000000@127.0.0.1:5061>;tag", b"<sip:>;tag"))
    with pytest.raises(SipParseError):
        request.validate()


# --- CSeq memo, ids, enum hashes ---------------------------------------------------------


def test_parse_cseq_shares_equal_immutable_values_and_stays_bounded() -> None:
    first = parse_cseq("1 INVITE")
    assert first == CSeq(1, "INVITE") and parse_cseq("1 INVITE") is first
    assert str(first) == "1 INVITE" and first.seq == 1 and first.method == "INVITE"
    for n in range(3000):
        assert parse_cseq(f"{n} BYE") == CSeq(n, "BYE")
    from sip import headers

    assert len(headers._CSEQ_SEEN) <= headers._CSEQ_SEEN_LIMIT
    with pytest.raises(SipParseError):
        parse_cseq("2147483648 INVITE")


def test_parse_name_addr_shares_a_remembered_address_and_stays_bounded() -> None:
    from sip import headers

    text = '"Alice" <sip:alice@example.com;transport=udp>;tag=a1b2'
    first = headers.parse_name_addr(text)
    assert headers.parse_name_addr(text) is first
    assert (first.display, first.tag, first.uri.user) == ("Alice", "a1b2", "alice")
    # A retransmission (or the next request of the dialog): the first message's values.
    one, two = parse_message(INVITE), parse_message(INVITE)
    assert two.from_ is one.from_ and two.to is one.to
    # A text that does not parse is refused every time, never remembered.
    for _ in range(2):
        with pytest.raises(SipParseError):
            headers.parse_name_addr("<sip:a@b")
    assert "<sip:a@b" not in headers._ADDRESSES_SEEN
    for n in range(headers._ADDRESSES_SEEN_LIMIT + 100):
        address = headers.parse_name_addr(f"<sip:{n}@example.com>;tag={n}")
        assert address.tag == str(n)
    assert len(headers._ADDRESSES_SEEN) <= headers._ADDRESSES_SEEN_LIMIT
    # Emptied when full: the first text is parsed again into an equal value.
    again = headers.parse_name_addr(text)
    assert again == first


def test_parse_uri_shares_a_remembered_uri_and_stays_bounded() -> None:
    from sip import uri as uris

    first = parse_uri("sip:+8613800138000@10.0.0.1:5060;transport=udp")
    assert parse_uri("sip:+8613800138000@10.0.0.1:5060;transport=udp") is first
    assert (first.user, first.port, first.params) == ("+8613800138000", 5060, {"transport": "udp"})
    for _ in range(2):
        with pytest.raises(SipParseError):
            parse_uri("sip:a@b:99999")
    assert "sip:a@b:99999" not in uris._URIS_SEEN
    for n in range(uris._URIS_SEEN_LIMIT + 100):
        assert parse_uri(f"sip:{n}@example.com").user == str(n)
    assert len(uris._URIS_SEEN) <= uris._URIS_SEEN_LIMIT


def test_ids_are_fresh_hex_of_the_promised_size() -> None:
    tags = {new_tag() for _ in range(5000)}
    assert len(tags) == 5000
    assert all(re.fullmatch(r"[0-9a-f]{12}", tag) for tag in tags)
    assert re.fullmatch(r"z9hG4bK[0-9a-f]{16}", new_branch())
    assert re.fullmatch(r"[0-9a-f]{24}@h", new_call_id("h"))
    assert len(random_hex(5000)) == 10000  # more than the pool holds at once


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_repeats_the_parents_ids() -> None:
    new_tag()  # the pool is filled: the child inherits it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next tag, then leave without running pytest's teardown
        os.close(read)
        os.write(write, new_tag().encode())
        os._exit(0)
    os.close(write)
    child_tag = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child_tag) == 12
    assert child_tag != new_tag()


def test_dialog_enums_hash_by_identity() -> None:
    for enum_type in (DialogRole, DialogState, DialogInput):
        assert vars(enum_type)["__hash__"] is object.__hash__
        members = list(enum_type)
        assert len({hash(m) for m in members}) == len(members)
        assert {m: m.value for m in members}[members[0]] == members[0].value


def test_make_response_copies_and_tags_as_before() -> None:
    request = parse_message(INVITE)
    assert isinstance(request, Request)
    response = make_response(request, 180, to_tag="t1", extra=[("Contact", "<sip:x@h>")])
    assert list(response.headers) == [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-1-0;rport"),
        ("From", "<sip:13900000000@127.0.0.1:5061>;tag=abc"),
        ("To", "<sip:13800000001@127.0.0.1:5060>;tag=t1"),
        ("Call-ID", "1-1@127.0.0.1"),
        ("CSeq", "1 INVITE"),
        ("Contact", "<sip:x@h>"),
    ]
    assert response.to_tag == "t1" and request.to_tag is None


def test_replace_top_via_rewrites_the_first_value_and_keeps_it_parsed() -> None:
    second_line = b"Via: SIP/2.0/UDP a.example;branch=z9hG4bKa, SIP/2.0/UDP b.example\r\n"
    for data in (INVITE, INVITE.replace(b"Via: ", second_line + b"Via: ", 1)):
        request = parse_message(data)
        old_top = request.top_via
        stamped = Via(
            transport=old_top.transport,
            host=old_top.host,
            port=old_top.port,
            params={**old_top.params, "received": "192.0.2.1"},
        )
        others = [str(via) for via in request.vias[1:]]
        request.replace_top_via(stamped)
        assert request.top_via is stamped
        reparsed = parse_message(request.to_bytes())
        assert [str(via) for via in reparsed.vias] == [str(stamped), *others]
        assert [str(via) for via in request.vias] == [str(stamped), *others]


def test_threads_draw_their_ids_from_pools_of_their_own() -> None:
    from sip import builders

    drawn: dict[str, tuple[object, list[bytes]]] = {}

    def draw(name: str) -> None:
        drawn[name] = (builders._entropy(), [random_bytes(16) for _ in range(2000)])

    threads = [threading.Thread(target=draw, args=(f"t{index}",)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pools = {id(pool) for pool, _ in drawn.values()}
    values = [value for _, chunk in drawn.values() for value in chunk]
    assert len(pools) == 3
    assert len(set(values)) == len(values) == 6000
