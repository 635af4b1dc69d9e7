"""bench/sipcall.py's call flow does what the figure claims: a whole call through a real
Endpoint, the datagrams the scenarios send, every transaction ended. No timing here."""

from __future__ import annotations

from bench_scripts import load_bench_script

from sip import parse_message

bench = load_bench_script("sipcall")


def test_each_call_runs_the_whole_flow_and_ends_every_transaction() -> None:
    b2bua = bench.B2buaStandIn()
    call_ids = set()
    for n in range(3):
        trace = bench.run_call(b2bua, n)
        bench.check_call(trace)  # 7 start lines in order, everything sent parses
        assert b2bua.endpoint.transaction_count == 0
        sent = [parse_message(data) for data in trace.sent]
        invite_out, bye_out = sent[1], sent[6]
        # the outbound leg is a dialog of its own, and the BYE goes in it
        assert invite_out.call_id == bye_out.call_id != parse_message(trace.received[0]).call_id
        assert bye_out.to_tag == f"{bench.SIPP_PID}SIPpTag01{n}"
        call_ids.add(invite_out.call_id)
        # the caller's ACK and BYE carried the To tag of our 200
        assert parse_message(trace.received[4]).to_tag == sent[4].to_tag
    assert len(call_ids) == 3


def test_the_harness_renders_what_the_call_received() -> None:
    b2bua = bench.B2buaStandIn()
    trace = bench.run_call(b2bua, 7)
    assert trace.received[0] == bench.caller_invite(7)
    bench.harness_only(trace, 7)  # runs on the same bytes without raising


def test_objects_per_message_counts_something_for_each_sample() -> None:
    counts = bench.objects_per_message(count=50)
    assert set(counts) == {
        f"{name}{suffix}"
        for name in ("INVITE in", "200 OK in", "BYE in")
        for suffix in ("", " + fields read")
    }
    for created, collected in counts.values():
        assert created >= collected > 0
