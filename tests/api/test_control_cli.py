"""``maskline pool ...`` and ``maskline binding ...`` against a real API server (issue 4 parity)."""

from __future__ import annotations

from api_support import Api
from cli_support import Cli

import store


async def test_pool_commands(api: Api, cli: Cli) -> None:
    await api.import_inventory()
    await store.create_tenant(api.control.db, tenant_id="T1", name="one", now=api.clock.now)
    code, [created] = await cli(
        "pool", "create", "--type", "axb", "--name", "orders", "--tenant", "T1", "--mode", "smart"
    )
    assert code == 0
    key = created["pool_key"]
    code, [added] = await cli(
        "pool", "add-numbers", "--pool", key, "--count", "2", "--city", "北京", "--tenant", "T1"
    )
    assert code == 0 and len(added["numbers"]) == 2
    assert all(n.startswith("1700000") for n in added["numbers"])  # national display
    code, [refused] = await cli(
        "pool", "add-numbers", "--pool", key, "--count", "1", "--tenant", "T2"
    )
    assert (code, refused["code"]) == (1, "POOL_NOT_EXIST")
    code, [configured] = await cli(
        "pool", "configure", "--pool", key, "--no-recording", "--ringback", "AXBRing_A=t1",
        "--warn-free", "1", "--name", "orders-2",
    )  # fmt: skip
    assert code == 0
    assert (configured["name"], configured["recording"]) == ("orders-2", False)
    assert configured["ringback"] == {"AXBRing_A": "t1"}
    assert configured["allocation_mode"] == "smart" and configured["tenant_id"] == "T1"
    code, pools = await cli("pool", "list")
    assert code == 0 and [p["pool_key"] for p in pools] == [key]
    code, [shown] = await cli("pool", "show", "--pool", key)
    assert (shown["numbers"], shown["warn_free_numbers"]) == (2, 1)
    code, [bad] = await cli("pool", "configure", "--pool", key, "--ringback", "nonsense")
    assert (code, bad["code"]) == (2, "USAGE")


async def test_binding_update_and_list(api: Api, cli: Cli) -> None:
    await api.import_inventory()
    key = await api.pool("AXB", count=1, city="北京")
    _, [bound] = await cli(
        "bind", "axb", "--pool", key, "--a", "13800138000", "--b", "13900139000",
        "--expires", api.expires(),
    )  # fmt: skip
    code, [updated] = await cli(
        "binding", "update", "--pool", key, "--sub-id", bound["sub_id"], "--b", "137-0013-7000",
        "--restriction", "control_ax_disable", "--record", "--out-id", "o-9",
    )  # fmt: skip
    assert code == 0
    assert (updated["b"], updated["restriction"], updated["record"], updated["out_id"]) == (
        "13700137000", "CONTROL_AX_DISABLE", True, "o-9",
    )  # fmt: skip
    code, by_x = await cli("binding", "list", "--pool", key, "--x", bound["secret_no"])
    assert code == 0 and [b["sub_id"] for b in by_x] == [bound["sub_id"]]
    code, by_number = await cli("binding", "list", "--number", "13700137000")
    assert code == 0 and [b["sub_id"] for b in by_number] == [bound["sub_id"]]
    code, [nothing] = await cli("binding", "update", "--pool", key, "--sub-id", bound["sub_id"])
    assert (code, nothing["code"]) == (2, "USAGE")
    code, [refused] = await cli(
        "binding", "update", "--pool", key, "--sub-id", bound["sub_id"], "--expires", "soon"
    )
    assert (code, refused["code"]) == (1, "EXPIRE_DATE_ILLEGAL")
