"""Recordings through the real app (httpx ASGI, real SQLite, real WAV files): signed URLs,
tenant scoping, the download route, the store's attach ordering, retention and the RPC action.

The clock is the API tests' fake UTC clock (2030-01-01 12:00 Asia/Shanghai).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from api_support import Api
from rpc_support import sign_v2
from tenants_support import basic

import store
from api.control import ControlPlane
from api.recording_urls import RecordingUrlError, RecordingUrlSigner, derive_url_key
from api.recordings import configure_recordings, recordings_of, sweep_expired_recordings
from api.tenants import NewTenant, derive_secret, load_master_key
from config.settings import RecordingSettings
from media.recording import RecordingFile
from media.recording_io import write_wav
from routing.model import BindingType, PhoneNumber, PoolKey
from store import CallRecord, CallType, ReleaseDir
from store.recordings import (
    attach_recording,
    expired_recordings,
    mark_recordings_deleted,
    recording_events_after,
    recording_of,
)

X = PhoneNumber("+8617000000001")
DAY_S = 86_400


# ------------------------------------------------------------------------------- helpers


def _wav(tmp_path: Path, call_id: str, frames: int = 4000) -> RecordingFile:
    samples = np.stack(
        [np.arange(frames, dtype=np.int16), -np.arange(frames, dtype=np.int16)], axis=1
    )
    return write_wav(samples, tmp_path / "recordings" / "203001" / f"{call_id}.wav")


async def _record(control: ControlPlane, call_id: str, pool_key: str | None) -> CallRecord:
    now = control.clock()
    record = CallRecord(
        id=f"rec-{call_id}",
        call_id=call_id,
        secret_no=X,
        call_type=CallType.A_TO_PEER,
        call_time=now - 60,
        start_time=now - 50,
        release_time=now - 10,
        release_dir=ReleaseDir.CALLER,
        release_cause=16,
        pool_key=None if pool_key is None else PoolKey(pool_key),
    )
    await store.insert_call_record(control.db, record)
    return record


async def _recorded_call(
    api: Api, tmp_path: Path, call_id: str, pool_key: str | None
) -> RecordingFile:
    await _record(api.control, call_id, pool_key)
    file = _wav(tmp_path, call_id)
    await attach_recording(
        api.control.db, call_id=call_id, file=file, pool_key=pool_key, now=api.clock.now
    )
    return file


async def _tenant_pool(api: Api, name: str) -> tuple[NewTenant, str]:
    tenant = await api.control.tenants.create_tenant(name)
    pool = await api.control.create_pool(BindingType.AXB, f"{name} pool", tenant.tenant_id)
    return tenant, pool


async def _unauthenticated_get(api: Api, url: str) -> httpx.Response:
    request = api.client.build_request("GET", url)
    del request.headers["authorization"]
    return await api.client.send(request)


def _record_paths(db_path: Path, call_id: str) -> list[str | None]:
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute("SELECT recording_path FROM call_records WHERE call_id = ?", (call_id,))
        return [row[0] for row in rows]
    finally:
        conn.close()


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    rendered = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{parts.path}?{rendered}"


def _flip(hex_text: str) -> str:
    return ("0" if hex_text[0] != "0" else "1") + hex_text[1:]


# ------------------------------------------------------------------------------- signing


def test_signer_round_trip_and_every_alteration_is_refused() -> None:
    signer = RecordingUrlSigner(derive_url_key(bytes(range(32))), ttl_s=7200)
    url = signer.sign("callone", now=1000.4)
    assert url.expires == 8200
    assert url.path == f"/recordings/callone.wav?expires=8200&signature={url.signature}"
    signer.verify("callone", "8200", url.signature, now=8199.9)

    refused = [
        ("calltwo", "8200", url.signature),  # another call
        ("callone", "8201", url.signature),  # a later expiry
        ("callone", "08200", url.signature),  # the same number, not the signed text
        ("callone", "8200", _flip(url.signature)),  # a changed signature
        ("callone", "8200", url.signature.upper()),
        ("callone", "8200", url.signature[:-1]),
        ("callone", "8200", None),
        ("callone", None, url.signature),
        ("callone", "-1", url.signature),
        ("callone", "82e2", url.signature),
        ("../callone", "8200", url.signature),
    ]
    for call_id, expires, signature in refused:
        with pytest.raises(RecordingUrlError) as caught:
            signer.verify(call_id, expires, signature, now=1001)
        assert caught.value.status == 403 and caught.value.code == "FORBIDDEN"
    with pytest.raises(RecordingUrlError, match="expired"):
        signer.verify("callone", "8200", url.signature, now=8200)
    other_key = RecordingUrlSigner(derive_url_key(bytes(32)), ttl_s=7200)
    with pytest.raises(RecordingUrlError, match="signature"):
        other_key.verify("callone", "8200", url.signature, now=1001)


def test_url_key_is_derived_not_the_master_key() -> None:
    master = bytes(range(32))
    key = derive_url_key(master)
    assert len(key) == 32 and key != master
    assert key == hmac.new(master, b"maskline/recording-url/v1/key", hashlib.sha256).digest()
    # A URL signature under the raw master key would not verify.
    signer = RecordingUrlSigner(key, ttl_s=60)
    raw = hmac.new(master, b"maskline/recording-url/v1\x00c\x0060", hashlib.sha256).hexdigest()
    with pytest.raises(RecordingUrlError):
        signer.verify("c", "60", raw, now=0)
    assert signer.sign("c", now=0).signature != raw
    assert derive_secret(master, "c", "60") not in {key.hex(), signer.sign("c", now=0).signature}


def test_signer_refuses_bad_configuration() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        RecordingUrlSigner(b"short", ttl_s=60)
    with pytest.raises(ValueError, match="ttl_s"):
        RecordingUrlSigner(bytes(32), ttl_s=0)
    with pytest.raises(ValueError, match="call id"):
        RecordingUrlSigner(bytes(32), ttl_s=60).sign("a/b", now=0)


# ------------------------------------------------------------------------------- store


async def test_attach_after_the_call_record_fills_its_path(api: Api, tmp_path: Path) -> None:
    tenant, pool = await _tenant_pool(api, "acme")
    await _record(api.control, "callafter", pool)
    assert _record_paths(api.db_path, "callafter") == [None]
    file = _wav(tmp_path, "callafter")
    row = await attach_recording(
        api.control.db, call_id="callafter", file=file, pool_key=pool, now=api.clock.now
    )
    assert (row.call_id, row.pool_key, row.tenant_id, row.path) == (
        "callafter",
        pool,
        tenant.tenant_id,
        str(file.path),
    )
    assert (row.duration_s, row.size_bytes, row.created_at) == (0.5, file.size_bytes, api.clock.now)
    assert _record_paths(api.db_path, "callafter") == [str(file.path)]


async def test_attach_before_the_call_record_is_picked_up_by_it(api: Api, tmp_path: Path) -> None:
    file = _wav(tmp_path, "callbefore")
    await attach_recording(api.control.db, call_id="callbefore", file=file, pool_key=None)
    await _record(api.control, "callbefore", None)
    assert _record_paths(api.db_path, "callbefore") == [str(file.path)]
    # A record of another call is not touched by the trigger.
    await _record(api.control, "othercall", None)
    assert _record_paths(api.db_path, "othercall") == [None]


async def test_attach_is_idempotent_and_refuses_a_second_file(api: Api, tmp_path: Path) -> None:
    file = _wav(tmp_path, "calltwice")
    first = await attach_recording(api.control.db, call_id="calltwice", file=file, pool_key=None)
    again = await attach_recording(api.control.db, call_id="calltwice", file=file, pool_key=None)
    assert again == first
    other = RecordingFile(tmp_path / "other.wav", 1.0, 10)
    with pytest.raises(store.ConflictError):
        await attach_recording(api.control.db, call_id="calltwice", file=other, pool_key=None)
    assert await recording_of(api.control.db, "calltwice") == first
    events = await recording_events_after(api.control.db, 0)
    assert [e.call_id for e in events] == ["calltwice"]


async def test_recording_ready_events_come_in_order(api: Api, tmp_path: Path) -> None:
    for call_id in ("evone", "evtwo", "evthree"):
        await attach_recording(
            api.control.db, call_id=call_id, file=_wav(tmp_path, call_id), pool_key=None
        )
    events = await recording_events_after(api.control.db, 0)
    assert [e.call_id for e in events] == ["evone", "evtwo", "evthree"]
    later = await recording_events_after(api.control.db, events[0].id, limit=1)
    assert [e.call_id for e in later] == ["evtwo"]


# ------------------------------------------------------------------------------- REST


async def test_operator_gets_a_url_that_downloads_the_wav(api: Api, tmp_path: Path) -> None:
    file = await _recorded_call(api, tmp_path, "calldl", None)
    response = await api.client.get("/v1/calls/calldl/recording")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"url", "expires"}
    assert body["url"].startswith("http://maskline.test/recordings/calldl.wav?expires=")
    assert body["expires"] == "2030-01-01 14:00:00"  # default TTL 2 h, local time

    download = await _unauthenticated_get(api, body["url"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "audio/wav"
    assert download.headers["content-length"] == str(file.size_bytes)
    assert "no-store" in download.headers["cache-control"]
    assert download.content == file.path.read_bytes()


async def test_bad_urls_are_403_and_a_gone_file_404(api: Api, tmp_path: Path) -> None:
    file = await _recorded_call(api, tmp_path, "callbad", None)
    await _recorded_call(api, tmp_path, "callelse", None)
    url = (await api.client.get("/v1/calls/callbad/recording")).json()["url"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    bad = [
        _with_query(url, signature=_flip(query["signature"])),
        _with_query(url, expires=str(int(query["expires"]) + 3600)),
        url.replace("callbad", "callelse"),  # a valid signature of another call
        f"/recordings/callbad.wav?expires={query['expires']}",
        "/recordings/callbad.wav",
        _with_query(url, signature="zz"),
    ]
    for attempt in bad:
        response = await _unauthenticated_get(api, attempt)
        assert response.status_code == 403, attempt
        assert response.json()["code"] == "FORBIDDEN"

    api.clock.now += 7200  # the URL's expiry
    expired = await _unauthenticated_get(api, url)
    assert (expired.status_code, expired.json()["code"]) == (403, "FORBIDDEN")
    assert "expired" in expired.json()["message"]

    fresh = (await api.client.get("/v1/calls/callbad/recording")).json()["url"]
    file.path.unlink()
    gone = await _unauthenticated_get(api, fresh)
    assert (gone.status_code, gone.json()["code"]) == (404, "RECORDING_NOT_EXIST")


async def test_tenant_scoping_matches_the_call_record_route(api: Api, tmp_path: Path) -> None:
    owner, owner_pool = await _tenant_pool(api, "owner")
    intruder, _ = await _tenant_pool(api, "intruder")
    await _recorded_call(api, tmp_path, "callmine", owner_pool)
    await _record(api.control, "callnorec", owner_pool)
    as_owner = basic(owner.access_key_id, owner.access_key_secret)
    as_intruder = basic(intruder.access_key_id, intruder.access_key_secret)

    mine = await api.client.get("/v1/calls/callmine/recording", headers=as_owner)
    assert mine.status_code == 200, mine.text
    assert (await _unauthenticated_get(api, mine.json()["url"])).status_code == 200

    foreign = await api.client.get("/v1/calls/callmine/recording", headers=as_intruder)
    missing = await api.client.get("/v1/calls/nosuchcall/recording", headers=as_intruder)
    record_route = await api.client.get("/v1/calls/callmine", headers=as_intruder)
    assert foreign.status_code == missing.status_code == record_route.status_code == 404
    assert foreign.json()["code"] == missing.json()["code"] == "CALL_NOT_EXIST"
    assert foreign.json()["code"] == record_route.json()["code"]

    no_recording = await api.client.get("/v1/calls/callnorec/recording", headers=as_owner)
    assert (no_recording.status_code, no_recording.json()["code"]) == (404, "RECORDING_NOT_EXIST")

    unauthenticated = await _unauthenticated_get(api, "/v1/calls/callmine/recording")
    assert unauthenticated.status_code == 401


async def test_configured_ttl_and_public_base_url(api: Api, tmp_path: Path) -> None:
    await _recorded_call(api, tmp_path, "callttl", None)
    configure_recordings(
        api.control,
        RecordingSettings(url_ttl_s=60),
        public_base_url="https://rec.example/",
    )
    body = (await api.client.get("/v1/calls/callttl/recording")).json()
    assert body["url"].startswith("https://rec.example/recordings/callttl.wav?expires=")
    assert body["expires"] == "2030-01-01 12:01:00"
    path = body["url"].removeprefix("https://rec.example")
    assert (await _unauthenticated_get(api, path)).status_code == 200
    api.clock.now += 60
    assert (await _unauthenticated_get(api, path)).status_code == 403


async def test_the_key_comes_from_the_master_key_file(api: Api) -> None:
    master, created = load_master_key(api.control.tenants.master_key_path)
    assert not created
    signer = recordings_of(api.control).signer
    expected = RecordingUrlSigner(derive_url_key(master), ttl_s=7200).sign("k", now=5)
    assert signer.sign("k", now=5) == expected


# ------------------------------------------------------------------------------- retention


async def test_retention_deletes_old_recordings_and_clears_the_record(
    api: Api, tmp_path: Path
) -> None:
    db = api.control.db
    old_file = await _recorded_call(api, tmp_path, "callold", None)
    issued_at = api.clock.now
    url = (await api.client.get("/v1/calls/callold/recording")).json()["url"]
    api.clock.now += 89 * DAY_S
    new_file = await _recorded_call(api, tmp_path, "callnew", None)
    api.clock.now += 1 * DAY_S + 1  # callold is now 90 days and a second old

    result = await sweep_expired_recordings(db, retention_days=90, now=api.clock.now)
    assert (result.removed, result.missing, result.failed) == (1, 0, 0)
    assert not old_file.path.exists() and new_file.path.exists()
    old = await recording_of(db, "callold")
    assert old is not None and old.deleted_at == api.clock.now
    assert _record_paths(api.db_path, "callold") == [None]
    assert _record_paths(api.db_path, "callnew") == [str(new_file.path)]

    gone = await api.client.get("/v1/calls/callold/recording")
    assert (gone.status_code, gone.json()["code"]) == (404, "RECORDING_NOT_EXIST")
    swept_at = api.clock.now
    api.clock.now = issued_at + 60  # a URL still valid by its signature finds no file
    stale = await _unauthenticated_get(api, url)
    assert (stale.status_code, stale.json()["code"]) == (404, "RECORDING_NOT_EXIST")

    again = await sweep_expired_recordings(db, retention_days=90, now=swept_at)
    assert (again.removed, again.missing, again.failed) == (0, 0, 0)


async def test_retention_counts_missing_and_undeletable_files(api: Api, tmp_path: Path) -> None:
    db = api.control.db
    missing = await _recorded_call(api, tmp_path, "callmissing", None)
    missing.path.unlink()
    # A path that cannot be unlinked as a file: the row stays for the next sweep.
    stuck = tmp_path / "recordings" / "stuck.wav"
    stuck.mkdir(parents=True)
    await attach_recording(
        db, call_id="callstuck", file=RecordingFile(stuck, 1.0, 1), pool_key=None, now=0.0
    )
    result = await sweep_expired_recordings(db, retention_days=1, now=api.clock.now + 2 * DAY_S)
    assert (result.removed, result.missing, result.failed) == (0, 1, 1)
    remaining = await expired_recordings(db, created_before=api.clock.now + DAY_S)
    assert [row.call_id for row in remaining] == ["callstuck"]


async def test_retention_removes_stray_files_in_the_directory(api: Api, tmp_path: Path) -> None:
    db = api.control.db
    directory = tmp_path / "recordings"
    kept = await _recorded_call(api, tmp_path, "callkept", None)
    stray_old = directory / "202001" / "orphan.wav"
    stray_new = directory / "203001" / "recent-orphan.wav"
    temporary = directory / "202001" / ".x.wav.abc.tmp"
    other = directory / "202001" / "notes.txt"
    for path in (stray_old, stray_new, temporary, other):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    long_ago = api.clock.now - 400 * DAY_S
    for path in (stray_old, temporary, other, kept.path):
        os.utime(path, (long_ago, long_ago))
    os.utime(stray_new, (api.clock.now, api.clock.now))

    result = await sweep_expired_recordings(
        db, retention_days=90, now=api.clock.now, directory=directory
    )
    assert result.stray_files == 2
    assert not stray_old.exists() and not temporary.exists()
    assert other.exists() and stray_new.exists()
    assert kept.path.exists()  # named by a kept recording (its row is recent)


async def test_mark_deleted_skips_unknown_and_removed(api: Api, tmp_path: Path) -> None:
    file = await _recorded_call(api, tmp_path, "callmark", None)
    url = (await api.client.get("/v1/calls/callmark/recording")).json()["url"]
    db = api.control.db
    assert await mark_recordings_deleted(db, ["callmark", "nosuch"], now=1.0) == 1
    # Marked removed: not served even though the file is still there.
    assert file.path.exists()
    gone = await _unauthenticated_get(api, url)
    assert (gone.status_code, gone.json()["code"]) == (404, "RECORDING_NOT_EXIST")
    no_url = await api.client.get("/v1/calls/callmark/recording")
    assert (no_url.status_code, no_url.json()["code"]) == (404, "RECORDING_NOT_EXIST")
    assert await mark_recordings_deleted(db, ["callmark"], now=2.0) == 0
    assert await mark_recordings_deleted(db, [], now=3.0) == 0


async def test_retention_days_must_be_positive(api: Api) -> None:
    with pytest.raises(ValueError, match="retention_days"):
        await sweep_expired_recordings(api.control.db, retention_days=0, now=0.0)


# ------------------------------------------------------------------------------- RPC


async def _rpc(api: Api, tenant: NewTenant, params: dict[str, str]) -> dict[str, Any]:
    query = sign_v2(
        action="QueryRecordFileDownloadUrl",
        params=params,
        key_id=tenant.access_key_id,
        secret=tenant.access_key_secret,
        now=api.clock.now,
    )
    response = await api.client.post(f"/?{query}", headers={"authorization": ""})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_rpc_query_record_file_download_url(api: Api, tmp_path: Path) -> None:
    owner, pool = await _tenant_pool(api, "rpcowner")
    intruder, _ = await _tenant_pool(api, "rpcintruder")
    file = await _recorded_call(api, tmp_path, "callrpc", pool)
    await _record(api.control, "callrpcnorec", pool)

    body = await _rpc(api, owner, {"CallId": "callrpc", "PoolKey": pool})
    assert body["Code"] == "OK"
    url = body["DownloadUrl"]
    assert url.startswith("/recordings/callrpc.wav?expires=")
    download = await _unauthenticated_get(api, url)
    assert download.status_code == 200 and download.content == file.path.read_bytes()

    foreign = await _rpc(api, intruder, {"CallId": "callrpc"})
    assert foreign["Code"] == "isv.CALL_NOT_EXIST"
    none = await _rpc(api, owner, {"CallId": "callrpcnorec"})
    assert none["Code"] == "isv.RECORD_NOT_EXIST"

    configure_recordings(api.control, RecordingSettings(), public_base_url="https://rec.example")
    absolute = await _rpc(api, owner, {"CallId": "callrpc"})
    assert absolute["DownloadUrl"].startswith("https://rec.example/recordings/callrpc.wav?")
