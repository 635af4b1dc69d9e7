"""Tenants and their API keys: creation, secrets derived (never stored), Basic auth, disable,
suspension, restarts, the master key file, operator-only routes."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from pathlib import Path

import pytest
from api_support import Api
from tenants_support import (
    as_tenant,
    basic,
    create_tenant,
    every_text_value,
    reopen,
    tenant_rows,
)

from api.rpc_signing import RpcSignatureError
from api.tenants import MasterKeyError, derive_secret, load_master_key

TENANT_ID = re.compile(r"T\d{12}")
ACCESS_KEY_ID = re.compile(r"MLAK[0-9A-Za-z]{20}")
SECRET = re.compile(r"[0-9A-Za-z]{30}")


def _master_key_path(api: Api) -> Path:
    return api.db_path.with_name("master.key")


# ------------------------------------------------------------------------------- creation


async def test_create_tenant_returns_a_key_pair_in_the_reference_shape(api: Api) -> None:
    created = await create_tenant(api, "  Acme Logistics  ")
    assert set(created) == {"tenant_id", "name", "access_key_id", "access_key_secret"}
    assert TENANT_ID.fullmatch(created["tenant_id"])
    assert created["name"] == "Acme Logistics"  # trimmed
    assert ACCESS_KEY_ID.fullmatch(created["access_key_id"])
    assert SECRET.fullmatch(created["access_key_secret"])
    rows = tenant_rows(api.db_path)
    assert [(r[0], r[1], r[2]) for r in rows["tenants"]] == [
        (created["tenant_id"], "Acme Logistics", "active")
    ]
    assert [(r[0], r[1], r[3]) for r in rows["api_keys"]] == [
        (created["access_key_id"], created["tenant_id"], "active")
    ]


async def test_the_secret_is_shown_once_and_never_read_back(api: Api) -> None:
    created = await create_tenant(api)
    tenant_id, key_id, secret = (
        created["tenant_id"],
        created["access_key_id"],
        created["access_key_secret"],
    )
    shown = await api.client.get(f"/v1/tenants/{tenant_id}")
    assert shown.status_code == 200
    body = shown.json()
    assert body["tenant_id"] == tenant_id
    assert body["name"] == "Acme"
    assert body["status"] == "active"
    assert body["created"] == "2030-01-01 12:00:00"  # local time of the fake clock
    assert body["keys"] == [
        {"access_key_id": key_id, "status": "active", "created": body["created"], "disabled": None}
    ]
    listed = await api.client.get("/v1/tenants")
    assert [t["tenant_id"] for t in listed.json()["tenants"]] == [tenant_id]
    own = await as_tenant(api, "GET", f"/v1/tenants/{tenant_id}", key_id, secret)
    assert own.status_code == 200
    for response in (shown, listed, own):
        assert secret not in response.text


async def test_the_database_holds_no_secret(api: Api) -> None:
    first = await create_tenant(api, "one")
    second = await api.client.post(f"/v1/tenants/{first['tenant_id']}/keys")
    assert second.status_code == 201
    secrets = [first["access_key_secret"], second.json()["access_key_secret"]]
    await api.control.close()  # every write committed; the WAL checkpointed into the file
    values = every_text_value(api.db_path)
    assert first["access_key_id"] in values  # the scan does see the key rows
    raw = b"".join(
        path.read_bytes()
        for path in api.db_path.parent.iterdir()
        if path.name.startswith(api.db_path.name)
    )
    for secret in secrets:
        assert not any(secret in value for value in values)
        assert secret.encode() not in raw


async def test_concurrent_creations_get_distinct_ids(api: Api) -> None:
    created = await asyncio.gather(
        *(api.control.tenants.create_tenant(f"tenant {i}") for i in range(20))
    )
    assert len({c.tenant_id for c in created}) == 20
    assert len({c.access_key_id for c in created}) == 20
    assert len({c.access_key_secret for c in created}) == 20
    assert len(tenant_rows(api.db_path)["api_keys"]) == 20


async def test_another_key_for_a_tenant(api: Api) -> None:
    created = await create_tenant(api)
    response = await api.client.post(f"/v1/tenants/{created['tenant_id']}/keys")
    assert response.status_code == 201
    key = response.json()
    assert set(key) == {"access_key_id", "access_key_secret"}
    assert key["access_key_id"] != created["access_key_id"]
    tenants = api.control.tenants
    assert (
        await tenants.authenticate(key["access_key_id"], key["access_key_secret"])
        == (created["tenant_id"])
    )
    # The two keys' secrets are unrelated: one does not open the other.
    assert await tenants.authenticate(key["access_key_id"], created["access_key_secret"]) is None
    assert tenants.tenant_of_key(key["access_key_id"]) == created["tenant_id"]


async def test_key_for_an_unknown_tenant_is_refused(api: Api) -> None:
    before = tenant_rows(api.db_path)
    response = await api.client.post("/v1/tenants/T000000000000/keys")
    assert response.status_code == 404
    assert response.json()["code"] == "TENANT_NOT_EXIST"
    assert tenant_rows(api.db_path) == before


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 129},
        {"name": "bad\nname"},
        {"name": "zero\u200bwidth"},
        {"name": 7},
        {},
        {"name": "ok", "extra": 1},
    ],
)
async def test_bad_names_are_refused_and_nothing_is_written(
    api: Api, body: dict[str, object]
) -> None:
    before = (tenant_rows(api.db_path), api.snapshot())
    response = await api.client.post("/v1/tenants", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "PARAMETER_ILLEGAL"
    assert (tenant_rows(api.db_path), api.snapshot()) == before


async def test_the_longest_name_is_accepted(api: Api) -> None:
    created = await create_tenant(api, "名" * 128)
    assert created["name"] == "名" * 128


# ------------------------------------------------------------------------------- Basic auth


async def test_basic_auth_with_the_key_reads_the_own_tenant_only(api: Api) -> None:
    mine = await create_tenant(api, "mine")
    other = await create_tenant(api, "other")
    key, secret = mine["access_key_id"], mine["access_key_secret"]
    own = await as_tenant(api, "GET", f"/v1/tenants/{mine['tenant_id']}", key, secret)
    assert own.status_code == 200
    assert own.json()["name"] == "mine"
    foreign = await as_tenant(api, "GET", f"/v1/tenants/{other['tenant_id']}", key, secret)
    missing = await as_tenant(api, "GET", "/v1/tenants/T000000000000", key, secret)
    # Another tenant's id answers exactly as an id that does not exist.
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["code"] == missing.json()["code"] == "TENANT_NOT_EXIST"
    assert foreign.json()["message"].replace(other["tenant_id"], "ID") == (
        missing.json()["message"].replace("T000000000000", "ID")
    )


async def test_wrong_or_unknown_credentials_are_401(api: Api) -> None:
    created = await create_tenant(api)
    path = f"/v1/tenants/{created['tenant_id']}"
    key, secret = created["access_key_id"], created["access_key_secret"]
    wrong_secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for key_id, candidate in (
        (key, wrong_secret),
        (key, secret + "x"),
        (key, secret.lower() if secret.lower() != secret else secret.upper()),
        ("MLAK" + "0" * 20, secret),
        (key.lower(), secret),
    ):
        response = await as_tenant(api, "GET", path, key_id, candidate)
        assert response.status_code == 401, (key_id, candidate)
        assert response.json()["code"] == "UNAUTHORIZED"


async def test_operator_only_routes_refuse_tenants_with_403(api: Api) -> None:
    mine = await create_tenant(api, "mine")
    key, secret = mine["access_key_id"], mine["access_key_secret"]
    tenant_id = mine["tenant_id"]
    before = (tenant_rows(api.db_path), api.snapshot())
    for method, path, body in (
        ("POST", "/v1/tenants", {"name": "sneaky"}),
        ("POST", "/v1/tenants", {"name": ""}),  # refused before the body is even looked at
        ("GET", "/v1/tenants", None),
        ("POST", f"/v1/tenants/{tenant_id}/keys", None),
        ("POST", f"/v1/keys/{key}/disable", None),
        ("POST", f"/v1/keys/{key}/enable", None),
        ("POST", f"/v1/tenants/{tenant_id}/suspend", None),
        ("POST", f"/v1/tenants/{tenant_id}/resume", None),
    ):
        response = await as_tenant(api, method, path, key, secret, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["code"] == "FORBIDDEN"
        assert response.json()["message"]
    assert (tenant_rows(api.db_path), api.snapshot()) == before
    still = await as_tenant(api, "GET", f"/v1/tenants/{tenant_id}", key, secret)
    assert still.status_code == 200


async def test_the_service_refuses_tenants_too(api: Api) -> None:
    mine = await api.control.tenants.create_tenant("mine")
    tenants = api.control.tenants
    with pytest.raises(Exception, match="FORBIDDEN"):
        await tenants.create_tenant("x", tenant=mine.tenant_id)
    with pytest.raises(Exception, match="FORBIDDEN"):
        await tenants.create_key(mine.tenant_id, tenant=mine.tenant_id)
    with pytest.raises(Exception, match="FORBIDDEN"):
        await tenants.set_key_status(mine.access_key_id, False, tenant=mine.tenant_id)
    with pytest.raises(Exception, match="FORBIDDEN"):
        await tenants.list_tenants(tenant=mine.tenant_id)
    assert len(tenant_rows(api.db_path)["api_keys"]) == 1
    assert (await tenants.get_tenant(mine.tenant_id, tenant=mine.tenant_id)).name == "mine"


# ------------------------------------------------------------------------------- disable, suspend


async def test_a_disabled_key_is_refused_until_enabled(api: Api) -> None:
    created = await create_tenant(api)
    tenant_id, key, secret = (
        created["tenant_id"],
        created["access_key_id"],
        created["access_key_secret"],
    )
    spare = (await api.client.post(f"/v1/tenants/{tenant_id}/keys")).json()
    path = f"/v1/tenants/{tenant_id}"
    api.clock.now += 60
    disabled = await api.client.post(f"/v1/keys/{key}/disable")
    assert disabled.status_code == 200
    assert disabled.json() == {"access_key_id": key, "status": "disabled"}
    refused = await as_tenant(api, "GET", path, key, secret)
    assert refused.status_code == 401
    tenants = api.control.tenants
    assert await tenants.authenticate(key, secret) is None
    with pytest.raises(RpcSignatureError) as raised:
        tenants.secret_for(key)
    assert (raised.value.code, raised.value.status) == ("InvalidAccessKeyId.Inactive", 400)
    assert raised.value.message == "Specified access key is disabled."
    # The tenant's other key still works.
    spare_ok = await as_tenant(api, "GET", path, spare["access_key_id"], spare["access_key_secret"])
    assert spare_ok.status_code == 200
    shown = {k["access_key_id"]: k for k in spare_ok.json()["keys"]}
    assert shown[key]["status"] == "disabled"
    assert shown[key]["disabled"] == "2030-01-01 12:01:00"
    assert shown[spare["access_key_id"]]["status"] == "active"

    enabled = await api.client.post(f"/v1/keys/{key}/enable")
    assert enabled.json() == {"access_key_id": key, "status": "active"}
    assert (await as_tenant(api, "GET", path, key, secret)).status_code == 200
    assert tenants.secret_for(key) == secret
    rows = {r[0]: r for r in tenant_rows(api.db_path)["api_keys"]}
    assert rows[key][3:] == ("active", rows[key][4], None)


async def test_disabling_twice_and_unknown_keys(api: Api) -> None:
    created = await create_tenant(api)
    key = created["access_key_id"]
    assert (await api.client.post(f"/v1/keys/{key}/disable")).status_code == 200
    first = tenant_rows(api.db_path)
    api.clock.now += 60
    again = await api.client.post(f"/v1/keys/{key}/disable")
    assert again.status_code == 200
    assert tenant_rows(api.db_path) == first  # disabled_at keeps the first time
    unknown = await api.client.post("/v1/keys/MLAK00000000000000000000/disable")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "ACCESS_KEY_NOT_EXIST"
    assert tenant_rows(api.db_path) == first


async def test_a_suspended_tenant_authenticates_nothing(api: Api) -> None:
    created = await create_tenant(api)
    tenant_id, key, secret = (
        created["tenant_id"],
        created["access_key_id"],
        created["access_key_secret"],
    )
    path = f"/v1/tenants/{tenant_id}"
    suspended = await api.client.post(f"/v1/tenants/{tenant_id}/suspend")
    assert suspended.json() == {"tenant_id": tenant_id, "status": "suspended"}
    assert (await as_tenant(api, "GET", path, key, secret)).status_code == 401
    with pytest.raises(RpcSignatureError, match=r"InvalidAccessKeyId\.Inactive"):
        api.control.tenants.secret_for(key)
    assert (await api.client.get(path)).json()["status"] == "suspended"
    resumed = await api.client.post(f"/v1/tenants/{tenant_id}/resume")
    assert resumed.json() == {"tenant_id": tenant_id, "status": "active"}
    assert (await as_tenant(api, "GET", path, key, secret)).status_code == 200
    missing = await api.client.post("/v1/tenants/T000000000000/suspend")
    assert missing.status_code == 404
    assert missing.json()["code"] == "TENANT_NOT_EXIST"


async def test_lookups_for_the_rpc_verifier(api: Api) -> None:
    tenants = api.control.tenants
    created = await tenants.create_tenant("Acme")
    assert tenants.secret_for(created.access_key_id) == created.access_key_secret
    assert tenants.tenant_of_key(created.access_key_id) == created.tenant_id
    assert tenants.secret_for("MLAKunknownunknownunkn") is None
    assert tenants.tenant_of_key("MLAKunknownunknownunkn") is None
    assert tenants.secret_for("") is None
    await tenants.set_key_status(created.access_key_id, False)
    # The owner of a disabled key is still known (the verifier names the right error).
    assert tenants.tenant_of_key(created.access_key_id) == created.tenant_id


# ------------------------------------------------------------------- restart, master key


async def test_keys_survive_a_restart(api: Api) -> None:
    first = await create_tenant(api, "one")
    second = (await api.client.post(f"/v1/tenants/{first['tenant_id']}/keys")).json()
    await api.client.post(f"/v1/keys/{second['access_key_id']}/disable")
    await api.control.close()
    restarted = await reopen(api.db_path, api.clock)
    try:
        tenants = restarted.tenants
        assert (
            await tenants.authenticate(first["access_key_id"], first["access_key_secret"])
            == (first["tenant_id"])
        )
        assert tenants.secret_for(first["access_key_id"]) == first["access_key_secret"]
        assert await tenants.authenticate(second["access_key_id"], second["access_key_secret"]) is (
            None
        )
        with pytest.raises(RpcSignatureError):
            tenants.secret_for(second["access_key_id"])
        view = await tenants.get_tenant(first["tenant_id"])
        assert [k.status for k in view.keys] == ["active", "disabled"]
    finally:
        await restarted.close()


async def test_the_master_key_file_is_private_and_hex(api: Api) -> None:
    path = _master_key_path(api)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert re.fullmatch(r"[0-9a-f]{64}\n", path.read_text())
    key, created = load_master_key(path)
    assert (key.hex(), created) == (path.read_text().strip(), False)


async def test_a_configured_master_key_path_is_used(api: Api, tmp_path: Path) -> None:
    configured = tmp_path / "secrets" / "custom.key"
    await api.control.close()
    restarted = await reopen(api.db_path, api.clock, master_key_path=configured)
    try:
        assert configured.exists()
        created = await restarted.tenants.create_tenant("Acme")
        master = bytes.fromhex(configured.read_text())
        assert derive_secret(master, created.access_key_id, _salt(api, created.access_key_id)) == (
            created.access_key_secret
        )
    finally:
        await restarted.close()


def _salt(api: Api, access_key_id: str) -> str:
    rows = {r[0]: r for r in tenant_rows(api.db_path)["api_keys"]}
    salt = rows[access_key_id][2]
    assert isinstance(salt, str)
    return salt


async def test_a_lost_master_key_is_recreated_and_old_secrets_then_fail(api: Api) -> None:
    # Documented in api.tenants: the master key must be backed up; without it a new one is made
    # at start-up (logged at error level when keys exist) and every old secret stops working.
    created = await create_tenant(api)
    old_master = _master_key_path(api).read_text()
    await api.control.close()
    _master_key_path(api).unlink()
    restarted = await reopen(api.db_path, api.clock)
    try:
        assert _master_key_path(api).read_text() != old_master
        tenants = restarted.tenants
        assert await tenants.authenticate(
            created["access_key_id"], created["access_key_secret"]
        ) is (None)
        assert tenants.secret_for(created["access_key_id"]) != created["access_key_secret"]
        fresh = await tenants.create_key(created["tenant_id"])
        assert (
            await tenants.authenticate(fresh.access_key_id, fresh.access_key_secret)
            == (created["tenant_id"])
        )
    finally:
        await restarted.close()


@pytest.mark.parametrize(
    "content",
    [b"", b"not a key\n", b"ab" * 31 + b"\n", b"ab" * 33, b"zz" * 32, bytes(range(64))],
)
async def test_a_malformed_master_key_stops_the_start_up(api: Api, content: bytes) -> None:
    created = await create_tenant(api)
    await api.control.close()
    path = _master_key_path(api)
    path.write_bytes(content)
    with pytest.raises(MasterKeyError, match=re.escape(str(path))):
        await reopen(api.db_path, api.clock)
    assert path.read_bytes() == content  # never silently replaced
    assert tenant_rows(api.db_path)["api_keys"][0][0] == created["access_key_id"]


async def test_an_unreadable_master_key_stops_the_start_up(api: Api) -> None:
    await api.control.close()
    path = _master_key_path(api)
    path.unlink()
    path.mkdir()  # a directory where the file belongs: reading it fails, it is not replaced
    with pytest.raises(MasterKeyError, match=re.escape(str(path))):
        await reopen(api.db_path, api.clock)
    assert path.is_dir()


def test_secrets_depend_on_every_input() -> None:
    master = bytes(range(32))
    secret = derive_secret(master, "MLAKaaaaaaaaaaaaaaaaaaaa", "00")
    assert SECRET.fullmatch(secret)
    assert derive_secret(master, "MLAKaaaaaaaaaaaaaaaaaaaa", "00") == secret
    assert derive_secret(master, "MLAKaaaaaaaaaaaaaaaaaaab", "00") != secret
    assert derive_secret(master, "MLAKaaaaaaaaaaaaaaaaaaaa", "01") != secret
    assert derive_secret(bytes(32), "MLAKaaaaaaaaaaaaaaaaaaaa", "00") != secret
    # NUL separators: moving a character between id and salt changes the secret.
    assert derive_secret(master, "MLAKa", "b") != derive_secret(master, "MLAKab", "")


def test_master_key_creation_is_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    key, created = load_master_key(path)
    assert created and len(key) == 32
    again, created_again = load_master_key(path)
    assert (again, created_again) == (key, False)
    assert os.listdir(tmp_path) == ["master.key"]


def test_basic_header_helper_round_trips() -> None:
    # The helper other tests rely on encodes id:secret as RFC 7617 Basic credentials.
    assert basic("MLAKx", "s3cret") == {"authorization": "Basic TUxBS3g6czNjcmV0"}
