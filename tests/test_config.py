"""config: defaults, the example file, errors naming their key, env overrides, check-config."""

import ipaddress
import json
import subprocess
import sys
import tomllib
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import config
import engine.logging
from config import (
    ConfigError,
    HostPort,
    LogFormat,
    LogLevel,
    NumberFormat,
    Settings,
    Transport,
    load_settings,
)
from engine.cli import main

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "config" / "maskline.example.toml"

TRUNK = """
[[trunks]]
name = "carrier-a"
inbound_cidrs = ["10.0.0.0/8", "192.0.2.1"]
outbound = "192.0.2.10:5060"
transport = "tcp"
number_format = "e164"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "maskline.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env=env)
    return str(info.value)


# --------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    settings = load_settings(None)
    assert settings == Settings()
    assert settings.sip.listen == HostPort(host="127.0.0.1", port=5060)
    assert (settings.sip.listen_host, settings.sip.listen_port) == ("127.0.0.1", 5060)
    assert (settings.sip.t1_ms, settings.sip.t2_ms, settings.sip.t4_ms) == (500, 4000, 5000)
    assert settings.sip.max_message_bytes == 65535
    assert (settings.api.listen_host, settings.api.listen_port) == ("127.0.0.1", 8080)
    assert settings.api.operator_token is None
    assert settings.store.path == Path("var/maskline.sqlite3")
    assert settings.media.address == "127.0.0.1"
    assert settings.media.port_min <= settings.media.port_max
    assert settings.cdr.dir == Path("var/cdr")
    assert settings.recording.dir == Path("var/recordings")
    assert settings.log.level == LogLevel.INFO == "info"
    assert settings.log.format == LogFormat.JSON == "json"
    assert settings.time.zone == "Asia/Shanghai"
    assert settings.time.tzinfo.key == "Asia/Shanghai"
    assert settings.trunks == ()


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "")) == Settings()


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.sip.t1_ms = 1  # type: ignore[misc]


def test_operator_token_not_in_repr(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[api]\noperator_token = "s3cret-token"\n'))
    assert settings.api.operator_token == "s3cret-token"
    assert "s3cret-token" not in repr(settings)


# --------------------------------------------------------------------------- example file


def test_example_config_loads() -> None:
    settings = load_settings(EXAMPLE)
    assert settings == load_settings(config.EXAMPLE_CONFIG_PATH)
    assert str(settings.sip.listen) == "127.0.0.1:5060"
    assert str(settings.api.listen) == "127.0.0.1:8080"
    assert settings.api.operator_token
    assert settings.store.path == Path("var/maskline.sqlite3")
    for path in (settings.store.path, settings.cdr.dir, settings.recording.dir):
        assert path.parts[0] == "var"
    [trunk] = settings.trunks
    assert trunk.outbound.host == "127.0.0.1"
    assert trunk.allows("127.0.0.1")


def test_example_config_sets_and_documents_every_key() -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    expected = {
        "sip": {
            "listen",
            "t1_ms",
            "t2_ms",
            "t4_ms",
            "max_message_bytes",
            "max_call_duration_s",
            "session_expires_s",
            "min_se_s",
        },
        "api": {"listen", "operator_token", "master_key_file"},
        "store": {"path"},
        "media": {"address", "port_min", "port_max", "inactivity_timeout_s"},
        "cdr": {"dir"},
        "recording": {"dir", "retention_days", "url_ttl_s"},
        "audio": {"prompts_dir", "ringback_dir", "tts_voice"},
        "ivr": {"inter_digit_timeout_s", "max_tries"},
        "sms": {"retention_days", "confirm_expiry_s"},
        "overload": {
            "max_calls",
            "max_transactions",
            "max_loop_lag_ms",
            "retry_after_s",
            "source_rate_per_s",
            "source_burst",
            "max_sources",
            "max_tcp_connections",
            "full_gc_interval_s",
            "max_gc_pause_ms",
        },
        "log": {"level", "format", "batch_ms"},
        "time": {"zone"},
    }
    assert {k: set(v) for k, v in data.items() if k != "trunks"} == expected
    assert set(data["trunks"][0]) == {
        "name", "inbound_cidrs", "outbound", "transport", "number_format",
    }  # fmt: skip
    # Every key line is preceded by a comment (possibly after other documented keys).
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            above = [prev for prev in lines[:index] if prev.strip()]
            assert above[-1].lstrip().startswith("#") or "=" in above[-1], line


# --------------------------------------------------------------------------- full file


def test_full_file(tmp_path: Path) -> None:
    text = (
        """
[sip]
listen = "[::1]:5070"
t1_ms = 250
t2_ms = 2000
t4_ms = 2500
max_message_bytes = 4096
[api]
listen = "localhost:9090"
operator_token = "tok"
[store]
path = "/tmp/x.sqlite3"
[media]
address = "::1"
port_min = 40000
port_max = 40001
[cdr]
dir = "cdr"
[recording]
dir = "rec"
[log]
level = "debug"
format = "console"
[time]
zone = "UTC"
"""
        + TRUNK
    )
    settings = load_settings(write(tmp_path, text))
    assert settings.sip.listen == HostPort(host="::1", port=5070)
    assert str(settings.sip.listen) == "[::1]:5070"
    assert (settings.sip.t1_ms, settings.sip.t2_ms, settings.sip.t4_ms) == (250, 2000, 2500)
    assert settings.sip.max_message_bytes == 4096
    assert settings.api.listen == HostPort(host="localhost", port=9090)
    assert settings.store.path == Path("/tmp/x.sqlite3")
    assert (settings.media.address, settings.media.port_min, settings.media.port_max) == (
        "::1",
        40000,
        40001,
    )
    assert settings.log.level == LogLevel.DEBUG
    assert settings.log.format == LogFormat.CONSOLE
    [trunk] = settings.trunks
    assert trunk.name == "carrier-a"
    assert trunk.inbound_cidrs == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.0.2.1/32"),
    )
    assert trunk.outbound == HostPort(host="192.0.2.10", port=5060)
    assert trunk.transport is Transport.TCP
    assert trunk.number_format is NumberFormat.E164
    assert trunk.allows("10.1.2.3")
    assert trunk.allows("192.0.2.1")
    assert not trunk.allows("192.0.2.2")
    assert not trunk.allows("not-an-ip")


def test_trunk_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[[trunks]]\nname = "t"\noutbound = "h.example:5060"'))
    [trunk] = settings.trunks
    assert trunk.inbound_cidrs == ()
    assert trunk.transport is Transport.UDP
    assert trunk.number_format is NumberFormat.NATIONAL
    assert not trunk.allows("127.0.0.1")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # wrong types
        ("[sip]\nlisten = 5060", "sip.listen: must be a string, got number 5060"),
        ('[sip]\nt1_ms = "500"', "sip.t1_ms: must be an integer, got string '500'"),
        ("[sip]\nt1_ms = true", "sip.t1_ms: must be an integer, got boolean true"),
        ("[sip]\nt1_ms = 1.5", "sip.t1_ms: must be an integer"),
        ("[api]\noperator_token = 1", "api.operator_token: must be a string"),
        ('[api]\noperator_token = ""', "api.operator_token: must not be empty"),
        ("[store]\npath = []", "store.path: must be a string, got an array"),
        ('[store]\npath = ""', "store.path: must not be empty"),
        ("[cdr]\ndir = 1", "cdr.dir: must be a string"),
        ("[recording]\ndir = false", "recording.dir: must be a string"),
        ('[media]\nport_min = "1"', "media.port_min: must be an integer"),
        ("sip = 1", "sip: must be a table"),
        # bad host:port
        ('[sip]\nlisten = "127.0.0.1"', "sip.listen: expected host:port"),
        ('[sip]\nlisten = "127.0.0.1:"', "sip.listen: port must be a number"),
        ('[sip]\nlisten = ":5060"', "sip.listen: expected host:port"),
        ('[sip]\nlisten = "127.0.0.1:http"', "sip.listen: port must be a number"),
        ('[sip]\nlisten = "127.0.0.1:0"', "sip.listen: port 0 out of range 1..65535"),
        ('[sip]\nlisten = "127.0.0.1:65536"', "sip.listen: port 65536 out of range"),
        ('[sip]\nlisten = "::1:5060"', "sip.listen: IPv6 addresses must be in brackets"),
        ('[sip]\nlisten = "[::1]5060"', "sip.listen: expected [ipv6]:port"),
        ('[sip]\nlisten = "[nope]:5060"', "sip.listen: 'nope' is not an IPv6 address"),
        ('[sip]\nlisten = "127.0.0.256:5060"', "sip.listen: '127.0.0.256' is neither"),
        ('[sip]\nlisten = "bad_host:5060"', "sip.listen: 'bad_host' is neither"),
        ('[api]\nlisten = "1.2.3.4:99999"', "api.listen: port 99999 out of range"),
        ('[media]\naddress = "example.com"', "media.address: 'example.com' is not an IP"),
        # ranges
        ("[sip]\nt1_ms = 0", "sip.t1_ms: must be in 1..60000, got 0"),
        ("[sip]\nt1_ms = 1000\nt2_ms = 500", "sip.t2_ms: must be at least t1_ms (1000)"),
        ("[sip]\nt4_ms = -1", "sip.t4_ms: must be in 1..600000"),
        ("[sip]\nmax_message_bytes = 100", "sip.max_message_bytes: must be in 512..1048576"),
        ("[media]\nport_min = 0", "media.port_min: must be in 1..65535, got 0"),
        ("[media]\nport_max = 70000", "media.port_max: must be in 1..65535, got 70000"),
        (
            "[media]\nport_min = 30000\nport_max = 20000",
            "media.port_min: must not exceed port_max (20000), got 30000",
        ),
        # enums
        ('[log]\nlevel = "loud"', "log.level: must be one of debug, info, warning, error"),
        ('[log]\nformat = "xml"', "log.format: must be one of json, console"),
        ('[time]\nzone = "Mars/Olympus"', "time.zone: unknown time zone 'Mars/Olympus'"),
        ('[time]\nzone = "../etc/passwd"', "time.zone: unknown time zone"),
        # unknown sections and keys
        ("[nope]\nx = 1", "nope: unknown section"),
        ("toplevel = 1", "toplevel: unknown section"),
        ("[sip]\nlisten_port = 5060", "sip.listen_port: unknown key"),
        ("[api]\ntoken = 'x'", "api.token: unknown key"),
        ("[store]\nfile = 'x'", "store.file: unknown key"),
        ("[media]\nports = 1", "media.ports: unknown key"),
        ("[cdr]\npath = 'x'", "cdr.path: unknown key"),
        ("[recording]\npath = 'x'", "recording.path: unknown key"),
        ("[log]\nlevels = 'x'", "log.levels: unknown key"),
        ("[time]\ntz = 'UTC'", "time.tz: unknown key"),
        ("[sip.extra]\nx = 1", "sip.extra: unknown key"),
    ],
)
def test_bad_values_name_their_key(tmp_path: Path, text: str, message: str) -> None:
    assert error_of(tmp_path, text).startswith(message)


@pytest.mark.parametrize(
    ("trunk", "message"),
    [
        ('outbound = "h:1"', "trunks[0].name: is required"),
        ('name = ""\noutbound = "h:1"', "trunks[0].name: must not be empty"),
        ("name = 1\noutbound = 'h:1'", "trunks[0].name: must be a string"),
        ('name = "t"', "trunks[0].outbound: is required"),
        ('name = "t"\noutbound = "h"', "trunks[0].outbound: expected host:port"),
        ('name = "t"\noutbound = "h:0"', "trunks[0].outbound: port 0 out of range"),
        (
            'name = "t"\noutbound = "h:1"\ntransport = "sctp"',
            "trunks[0].transport: must be one of udp, tcp",
        ),
        (
            'name = "t"\noutbound = "h:1"\ntransport = "UDP"',
            "trunks[0].transport: must be one of udp, tcp",
        ),
        (
            'name = "t"\noutbound = "h:1"\nnumber_format = "intl"',
            "trunks[0].number_format: must be one of national, e164",
        ),
        (
            'name = "t"\noutbound = "h:1"\ninbound_cidrs = "10.0.0.0/8"',
            "trunks[0].inbound_cidrs: must be an array of CIDR strings",
        ),
        (
            'name = "t"\noutbound = "h:1"\ninbound_cidrs = ["10.0.0.0/8", "10.0.0.0/33"]',
            "trunks[0].inbound_cidrs[1]: '10.0.0.0/33' is not a CIDR",
        ),
        (
            'name = "t"\noutbound = "h:1"\ninbound_cidrs = ["nope"]',
            "trunks[0].inbound_cidrs[0]: 'nope' is not a CIDR",
        ),
        (
            'name = "t"\noutbound = "h:1"\ninbound_cidrs = [10]',
            "trunks[0].inbound_cidrs[0]: must be a CIDR string",
        ),
        ('name = "t"\noutbound = "h:1"\nuser = "x"', "trunks[0].user: unknown key"),
    ],
)
def test_bad_trunks_name_their_key(tmp_path: Path, trunk: str, message: str) -> None:
    assert error_of(tmp_path, "[[trunks]]\n" + trunk).startswith(message)


def test_error_names_index_of_later_trunk(tmp_path: Path) -> None:
    text = TRUNK + '\n[[trunks]]\nname = "b"\noutbound = "h:1"\ntransport = "x"\n'
    assert error_of(tmp_path, text) == "trunks[1].transport: must be one of udp, tcp"


def test_duplicate_trunk_names(tmp_path: Path) -> None:
    assert error_of(tmp_path, TRUNK + TRUNK).startswith("trunks[1].name: duplicate trunk name")


def test_trunks_must_be_array_of_tables(tmp_path: Path) -> None:
    assert error_of(tmp_path, '[trunks]\nname = "t"').startswith(
        "trunks: must be an array of tables"
    )
    assert error_of(tmp_path, "trunks = [1]").startswith("trunks[0]: must be a table")


def test_config_error_attributes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, '[log]\nformat = "xml"'))
    assert info.value.key == "log.format"
    assert info.value.problem == "must be one of json, console"
    assert isinstance(info.value, ValueError)


def test_missing_file_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(write(tmp_path, "[sip\nlisten ="))


# --------------------------------------------------------------------------- env overrides


def test_env_override_listen() -> None:
    settings = load_settings(None, env={"MASKLINE_SIP__LISTEN": "127.0.0.1:5070"})
    assert (settings.sip.listen_host, settings.sip.listen_port) == ("127.0.0.1", 5070)


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[sip]\nlisten = "127.0.0.1:5060"\nt1_ms = 500\n')
    env = {
        "MASKLINE_SIP__LISTEN": "127.0.0.2:5080",
        "MASKLINE_SIP__T1_MS": "100",
        "MASKLINE_MEDIA__PORT_MIN": "30000",
        "MASKLINE_MEDIA__PORT_MAX": "30010",
        "MASKLINE_LOG__FORMAT": "console",
        "MASKLINE_STORE__PATH": "/tmp/db.sqlite3",
        # Text keys get the text as written, even when it reads as a TOML number.
        "MASKLINE_API__OPERATOR_TOKEN": "12345",
        # A quoted TOML string works too.
        "MASKLINE_TIME__ZONE": '"UTC"',
    }
    settings = load_settings(path, env=env)
    assert str(settings.sip.listen) == "127.0.0.2:5080"
    assert settings.sip.t1_ms == 100
    assert (settings.media.port_min, settings.media.port_max) == (30000, 30010)
    assert settings.log.format is LogFormat.CONSOLE
    assert settings.store.path == Path("/tmp/db.sqlite3")
    assert settings.api.operator_token == "12345"
    assert settings.time.zone == "UTC"


def test_env_override_trunk(tmp_path: Path) -> None:
    path = write(tmp_path, TRUNK)
    env = {
        "MASKLINE_TRUNKS__0__OUTBOUND": "127.0.0.1:5090",
        "MASKLINE_TRUNKS__0__INBOUND_CIDRS": '["127.0.0.0/8"]',
        "MASKLINE_TRUNKS__0__TRANSPORT": "udp",
    }
    [trunk] = load_settings(path, env=env).trunks
    assert str(trunk.outbound) == "127.0.0.1:5090"
    assert trunk.inbound_cidrs == (ipaddress.ip_network("127.0.0.0/8"),)
    assert trunk.transport is Transport.UDP


def test_env_ignores_unrelated_variables() -> None:
    env = {"PATH": "/bin", "MASKLINE_HOME": "/x", "SIP__LISTEN": "nope", "maskline_sip__x": "1"}
    assert load_settings(None, env=env) == Settings()


def test_env_none_means_no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASKLINE_SIP__LISTEN", "127.0.0.1:5999")
    assert load_settings(None).sip.listen_port == 5060


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MASKLINE_SIP__LISTEN": "5070"},
            "sip.listen: expected host:port, got '5070' "
            "(from environment variable MASKLINE_SIP__LISTEN)",
        ),
        (
            {"MASKLINE_SIP__T1_MS": "fast"},
            "sip.t1_ms: must be an integer, got string 'fast' "
            "(from environment variable MASKLINE_SIP__T1_MS)",
        ),
        ({"MASKLINE_SIP__T1_MS": "0"}, "sip.t1_ms: must be in 1..60000, got 0 (from environment"),
        (
            {"MASKLINE_TRUNKS__0__TRANSPORT": "sctp"},
            "trunks[0].transport: must be one of udp, tcp (from environment variable",
        ),
        (
            {"MASKLINE_SIP__LISTEN_PORT": "5070"},
            "sip.listen_port: unknown key (from environment variable MASKLINE_SIP__LISTEN_PORT)",
        ),
        ({"MASKLINE_NOPE__KEY": "1"}, "nope.key: unknown key (from environment variable"),
        ({"MASKLINE_SIP__LISTEN__X": "1"}, "sip.listen.x: unknown key"),
        ({"MASKLINE_SIP__": "1"}, "MASKLINE_SIP__: malformed override name"),
        ({"MASKLINE_TRUNKS__5__NAME": "x"}, "trunks[5]: no such trunk in the file"),
        ({"MASKLINE_TRUNKS__NAME": "x"}, "trunks.name: trunk overrides are"),
        (
            {"MASKLINE_MEDIA__PORT_MIN": "30000", "MASKLINE_MEDIA__PORT_MAX": "20000"},
            "media.port_min: must not exceed port_max",
        ),
    ],
)
def test_bad_env_overrides(tmp_path: Path, env: dict[str, str], message: str) -> None:
    assert error_of(tmp_path, TRUNK, env=env).startswith(message)


# --------------------------------------------------------------------------- HostPort


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:5060", "127.0.0.1", 5060),
        ("0.0.0.0:1", "0.0.0.0", 1),
        ("[::1]:5060", "::1", 5060),
        ("[2001:db8::1]:65535", "2001:db8::1", 65535),
        ("sbc.carrier.example:5060", "sbc.carrier.example", 5060),
        ("localhost:8080", "localhost", 8080),
    ],
)
def test_host_port_round_trip(text: str, host: str, port: int) -> None:
    parsed = HostPort.parse(text)
    assert (parsed.host, parsed.port) == (host, port)
    assert str(parsed) == text


# --------------------------------------------------------------------------- check-config


@pytest.fixture
def reset_logging() -> Iterator[None]:
    yield
    engine.logging.reset_logging()


def test_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True}


def test_check_config_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, TRUNK.replace('"tcp"', '"sctp"'))
    assert main(["check-config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err) == {
        "ok": False,
        "error": "trunks[0].transport: must be one of udp, tcp",
    }


def test_check_config_applies_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASKLINE_API__LISTEN", "nowhere")
    assert main(["check-config", str(EXAMPLE)]) == 2
    assert json.loads(capsys.readouterr().err)["error"].startswith("api.listen: expected host:port")


def test_check_config_takes_global_or_local_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(EXAMPLE), "check-config"]) == 0
    assert main(["check-config", "--config", str(EXAMPLE)]) == 0
    assert main(["check-config"]) == 2
    assert "no config file given" in capsys.readouterr().err


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "absent.toml")]) == 2
    assert "cannot read config file" in json.loads(capsys.readouterr().err)["error"]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["no-such-command"]) == 2
    assert main(["--help"]) == 0
    assert "check-config" in capsys.readouterr().out


@pytest.mark.usefixtures("reset_logging")
@pytest.mark.parametrize(
    "argv",
    [
        ["--config", str(EXAMPLE), "serve"],
        ["serve", "--config", str(EXAMPLE)],
        ["--config", "/absent.toml", "serve", "--config", str(EXAMPLE)],
    ],
)
def test_serve_loads_settings_and_runs_server(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Settings] = []

    def run(settings: Settings) -> int:
        seen.append(settings)
        return 7

    fake = types.ModuleType("engine.server")
    fake.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "engine.server", fake)
    monkeypatch.setattr(sys.modules["engine"], "server", fake, raising=False)
    monkeypatch.setenv("MASKLINE_SIP__LISTEN", "127.0.0.1:5071")
    assert main(argv) == 7
    [settings] = seen
    assert settings.sip.listen_port == 5071
    assert settings.trunks[0].name == "loopback"
    line = json.loads(capsys.readouterr().err.splitlines()[0])
    assert line["event"] == "starting"
    assert line["sip_listen"] == "127.0.0.1:5071"


def test_serve_with_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[sip]\nlisten = 1")
    assert main(["serve", "--config", str(path)]) == 2
    assert json.loads(capsys.readouterr().err)["error"].startswith("sip.listen:")


def maskline_command() -> list[str]:
    # The console script of the virtualenv running the tests (.venv/bin/maskline under make).
    script = Path(sys.executable).parent / "maskline"
    assert script.exists(), f"{script} missing: is the project installed (pip install -e .)?"
    return [str(script)]


def test_check_config_subprocess_ok() -> None:
    result = subprocess.run(
        [*maskline_command(), "check-config", str(EXAMPLE)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ok": True}


def test_check_config_subprocess_bad(tmp_path: Path) -> None:
    path = write(tmp_path, "[media]\nport_min = 30000\nport_max = 20000\n")
    result = subprocess.run(
        [*maskline_command(), "check-config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    error = json.loads(result.stderr)
    assert error["ok"] is False
    assert error["error"].startswith("media.port_min: must not exceed port_max")


# --------------------------------------------------------------------------- calls issue keys

_TRUNK = '[[trunks]]\nname = "t"\noutbound = "127.0.0.1:5080"\n'


def test_trunk_digest_credentials_both_or_none(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, _TRUNK + 'auth_username = "ml"\nauth_password = "pw"\n')
    )
    assert settings.trunks[0].auth_username == "ml"
    assert "pw" not in repr(settings.trunks[0]), "the password stays out of logs"
    only_user = error_of(tmp_path, _TRUNK + 'auth_username = "ml"\n')
    assert only_user.startswith("trunks[0].auth_password:")
    only_password = error_of(tmp_path, _TRUNK + 'auth_password = "pw"\n')
    assert only_password.startswith("trunks[0].auth_username:")


def test_max_call_duration_bounds(tmp_path: Path) -> None:
    assert load_settings(None).sip.max_call_duration_s == 14400
    too_short = error_of(tmp_path, "[sip]\nmax_call_duration_s = 1\n")
    assert too_short.startswith("sip.max_call_duration_s:")


def test_session_timer_keys_defaults_and_bounds(tmp_path: Path) -> None:
    sip = load_settings(None).sip
    assert (sip.session_expires_s, sip.min_se_s) == (1800, 90)
    sip = load_settings(write(tmp_path, "[sip]\nsession_expires_s = 600\nmin_se_s = 120\n")).sip
    assert (sip.session_expires_s, sip.min_se_s) == (600, 120)
    assert error_of(tmp_path, "[sip]\nsession_expires_s = 89\n").startswith(
        "sip.session_expires_s:"
    )
    assert error_of(tmp_path, "[sip]\nmin_se_s = 60\n").startswith("sip.min_se_s:")
    above = error_of(tmp_path, "[sip]\nsession_expires_s = 120\nmin_se_s = 121\n")
    assert above.startswith("sip.min_se_s:") and "session_expires_s" in above
    assert error_of(tmp_path, '[sip]\nmin_se_s = "90"\n').startswith("sip.min_se_s:")


# --------------------------------------------------------------------------- media sections


def test_media_recording_audio_and_ivr_keys_are_read(tmp_path: Path) -> None:
    text = (
        "[media]\ninactivity_timeout_s = 7\n"
        "[recording]\nretention_days = 30\nurl_ttl_s = 600\n"
        '[audio]\nprompts_dir = "p"\nringback_dir = "r"\ntts_voice = "en-us"\n'
        "[ivr]\ninter_digit_timeout_s = 3\nmax_tries = 2\n"
    )
    settings = load_settings(write(tmp_path, text))
    assert settings.media.inactivity_timeout_s == 7
    assert (settings.recording.retention_days, settings.recording.url_ttl_s) == (30, 600)
    assert settings.audio.prompts_dir == Path("p")
    assert settings.audio.ringback_dir == Path("r")
    assert settings.audio.tts_voice == "en-us"
    assert (settings.ivr.inter_digit_timeout_s, settings.ivr.max_tries) == (3, 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[media]\ninactivity_timeout_s = 0", "media.inactivity_timeout_s"),
        ("[recording]\nretention_days = 0", "recording.retention_days"),
        ("[recording]\nurl_ttl_s = 5", "recording.url_ttl_s"),
        ('[audio]\ntts_voice = ""', "audio.tts_voice"),
        ("[ivr]\nmax_tries = 0", "ivr.max_tries"),
        ("[ivr]\ninter_digit_timeout_s = 61", "ivr.inter_digit_timeout_s"),
        ("[ivr]\nprompt = 1", "ivr.prompt"),
    ],
)
def test_media_section_errors_name_their_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_settings(write(tmp_path, text))


# --------------------------------------------------------------------------- overload


def test_overload_defaults_and_keys_are_read(tmp_path: Path) -> None:
    defaults = load_settings(None).overload
    assert (defaults.max_calls, defaults.max_transactions, defaults.max_loop_lag_ms) == (
        10_000,
        200_000,
        200,
    )
    assert (defaults.retry_after_s, defaults.source_rate_per_s, defaults.source_burst) == (
        5,
        3000,
        6000,
    )
    assert (defaults.max_sources, defaults.max_tcp_connections) == (10_000, 1024)
    assert (defaults.full_gc_interval_s, defaults.max_gc_pause_ms) == (600, 100)
    text = (
        "[overload]\nmax_calls = 20\nmax_transactions = 500\nmax_loop_lag_ms = 50\n"
        "retry_after_s = 2\nsource_rate_per_s = 0\nsource_burst = 10\nmax_sources = 3\n"
        "max_tcp_connections = 4\nfull_gc_interval_s = 5\nmax_gc_pause_ms = 7\n"
    )
    overload = load_settings(write(tmp_path, text)).overload
    assert (overload.max_calls, overload.max_transactions, overload.max_loop_lag_ms) == (
        20,
        500,
        50,
    )
    assert (overload.retry_after_s, overload.source_rate_per_s, overload.source_burst) == (
        2,
        0,
        10,
    )
    assert (overload.max_sources, overload.max_tcp_connections) == (3, 4)
    assert (overload.full_gc_interval_s, overload.max_gc_pause_ms) == (5, 7)


def test_overload_env_override(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, "[overload]\nmax_calls = 20\n"), env={"MASKLINE_OVERLOAD__MAX_CALLS": "7"}
    )
    assert settings.overload.max_calls == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[overload]\nmax_calls = 0", "overload.max_calls"),
        ("[overload]\nmax_transactions = 99", "overload.max_transactions"),
        ("[overload]\nmax_loop_lag_ms = 0", "overload.max_loop_lag_ms"),
        ("[overload]\nretry_after_s = 0", "overload.retry_after_s"),
        ("[overload]\nsource_rate_per_s = -1", "overload.source_rate_per_s"),
        ("[overload]\nsource_burst = 0", "overload.source_burst"),
        ("[overload]\nmax_sources = 0", "overload.max_sources"),
        ("[overload]\nmax_tcp_connections = 0", "overload.max_tcp_connections"),
        ("[overload]\nfull_gc_interval_s = -1", "overload.full_gc_interval_s"),
        ("[overload]\nfull_gc_interval_s = 86401", "overload.full_gc_interval_s"),
        ("[overload]\nmax_gc_pause_ms = 0", "overload.max_gc_pause_ms"),
        ('[overload]\nmax_calls = "10"', "overload.max_calls"),
        ("[overload]\nmax_cps = 1", "overload.max_cps"),
        ("overload = 1", "overload"),
    ],
)
def test_overload_errors_name_their_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_settings(write(tmp_path, text))
