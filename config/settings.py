"""Process settings: a TOML file, then ``MASKLINE_SECTION__KEY`` environment overrides.

The key names are a public contract (operators and external checks write configs with them), so
they are spelled out one by one below rather than derived from the dataclasses. Every problem is a
:class:`ConfigError` whose message starts with the dotted key (``trunks[0].transport: ...``), and
a key this module does not know is an error, never silently ignored: a typo in a config must not
leave a default in force without anyone noticing.

Pure: no sockets, no asyncio, no sqlite. Relative paths stay relative; they are resolved against
the working directory of the process that uses them.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final, TypeVar

__all__ = [
    "ENV_PREFIX",
    "EXAMPLE_CONFIG_PATH",
    "ApiSettings",
    "AudioSettings",
    "CdrSettings",
    "ConfigError",
    "HostPort",
    "IvrSettings",
    "LogFormat",
    "LogLevel",
    "LogSettings",
    "MediaSettings",
    "NumberFormat",
    "OverloadSettings",
    "RecordingSettings",
    "Settings",
    "SipSettings",
    "SmsSettings",
    "StoreSettings",
    "TimeSettings",
    "Transport",
    "TrunkSettings",
    "load_settings",
]

ENV_PREFIX: Final = "MASKLINE_"
#: The documented example; also a working loopback config (``make run`` uses it).
EXAMPLE_CONFIG_PATH: Final = Path(__file__).with_name("maskline.example.toml")

_ENV_SEPARATOR: Final = "__"
_MIN_PORT: Final = 1
_MAX_PORT: Final = 65535
# A SIP message smaller than this cannot carry the mandatory headers; larger than a UDP datagram
# can be framed over TCP, but 1 MiB is already far past anything a trunk sends.
_MIN_MESSAGE_BYTES: Final = 512
_MAX_MESSAGE_BYTES: Final = 1024 * 1024
# RFC 1123 host name label.
_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


class ConfigError(ValueError):
    """A configuration problem; ``str(err)`` is ``"<dotted key>: <problem>"``."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}" if key else problem)


# --------------------------------------------------------------------------- value types


class Transport(StrEnum):
    """SIP transport towards a trunk."""

    UDP = "udp"
    TCP = "tcp"


class NumberFormat(StrEnum):
    """How a trunk writes numbers in the user part of URIs."""

    NATIONAL = "national"  # 13800138000, 01012345678
    E164 = "e164"  # +8613800138000


class LogFormat(StrEnum):
    """Log line rendering: JSON lines for machines, coloured key=value for people."""

    JSON = "json"
    CONSOLE = "console"


class LogLevel(StrEnum):
    """Minimum level of log lines written."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class HostPort:
    """A host (IP literal or DNS name) and a port, written ``host:port`` or ``[v6]:port``."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> HostPort:
        """Parse ``host:port``; IPv6 literals must be bracketed. Raises ``ValueError``."""
        if text.startswith("["):
            close = text.find("]")
            if close < 0 or text[close + 1 : close + 2] != ":":
                raise ValueError(f"expected [ipv6]:port, got {text!r}")
            host, port_text = text[1:close], text[close + 2 :]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"{host!r} is not an IPv6 address") from None
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep or not host:
                raise ValueError(f"expected host:port, got {text!r}")
            if ":" in host:
                raise ValueError(
                    f"IPv6 addresses must be in brackets, e.g. [::1]:5060, got {text!r}"
                )
            if not _is_ipv4(host) and not _is_hostname(host):
                raise ValueError(f"{host!r} is neither an IPv4 address nor a host name")
        if not port_text.isascii() or not port_text.isdigit():
            raise ValueError(f"port must be a number, got {port_text!r}")
        port = int(port_text)
        if not _MIN_PORT <= port <= _MAX_PORT:
            raise ValueError(f"port {port} out of range {_MIN_PORT}..{_MAX_PORT}")
        return cls(host=host, port=port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _is_hostname(text: str) -> bool:
    name = text.removesuffix(".")
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    # An all-numeric last label is a mistyped IPv4 address (``127.0.0.256``), not a name.
    if labels[-1].isdigit():
        return False
    return all(_HOSTNAME_LABEL.match(label) for label in labels)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class SipSettings:
    """``[sip]``: the SIP listener (UDP and TCP on one host:port) and RFC 3261 timers."""

    listen: HostPort = HostPort(host="127.0.0.1", port=5060)
    t1_ms: int = 500  # RFC 3261 §17.1.1.1: RTT estimate
    t2_ms: int = 4000  # RFC 3261 §17.1.2.2: maximum non-INVITE retransmit interval
    t4_ms: int = 5000  # RFC 3261 §17.1.2.2: maximum time a message stays in the network
    max_message_bytes: int = 65535
    # Calls still up after this long are released by the platform (SPEC §4 limits).
    max_call_duration_s: int = 4 * 3600
    # RFC 4028 session timers: the interval we ask for on the outbound leg (and offer a
    # caller that supports timers but asks for none), and the smallest we accept (Min-SE).
    session_expires_s: int = 1800
    min_se_s: int = 90

    @property
    def listen_host(self) -> str:
        """Host the SIP transports bind to."""
        return self.listen.host

    @property
    def listen_port(self) -> int:
        """Port the SIP transports (UDP and TCP) bind to."""
        return self.listen.port


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """``[api]``: the HTTP control plane."""

    listen: HostPort = HostPort(host="127.0.0.1", port=8080)
    # None: no operator token configured, operator endpoints refuse every request.
    # repr=False keeps the secret out of logs and tracebacks that print the settings.
    operator_token: str | None = field(default=None, repr=False)
    # File holding the master key that tenants' API secrets are derived from (created, mode
    # 0600, on first start). None: "master.key" beside the [store] database.
    master_key_file: Path | None = None

    @property
    def listen_host(self) -> str:
        """Host the HTTP API binds to."""
        return self.listen.host

    @property
    def listen_port(self) -> int:
        """Port the HTTP API binds to."""
        return self.listen.port


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """``[store]``: the SQLite database."""

    path: Path = Path("var/maskline.sqlite3")


@dataclass(frozen=True, slots=True)
class MediaSettings:
    """``[media]``: RTP relay address (also written into SDP) and its UDP port range."""

    address: str = "127.0.0.1"
    port_min: int = 20000
    port_max: int = 29999
    # A call with no RTP from either side for this long is released on both legs (dead media).
    inactivity_timeout_s: int = 60


@dataclass(frozen=True, slots=True)
class CdrSettings:
    """``[cdr]``: where the daily CDR CSV files are written."""

    dir: Path = Path("var/cdr")


@dataclass(frozen=True, slots=True)
class RecordingSettings:
    """``[recording]``: where call recordings (WAV) are written."""

    dir: Path = Path("var/recordings")
    # Recordings older than this are deleted by a periodic job.
    retention_days: int = 90
    # Lifetime of a signed download URL (SPEC §4: default 2 h).
    url_ttl_s: int = 7200


@dataclass(frozen=True, slots=True)
class AudioSettings:
    """``[audio]``: announcement prompts, enterprise ringback tones and text-to-speech."""

    # Announcements per intercept cause (8 kHz WAV), made with espeak-ng when missing;
    # the operator may replace any file.
    prompts_dir: Path = Path("var/prompts")
    # Uploaded and synthesised ringback tones, stored as 8 kHz 16-bit mono WAV.
    ringback_dir: Path = Path("var/ringback")
    # espeak-ng voice for prompts and ringback from text.
    tts_voice: str = "cmn-latn-pinyin"


@dataclass(frozen=True, slots=True)
class IvrSettings:
    """``[ivr]``: the AXN-extension prompt ("enter the extension followed by #")."""

    # Seconds allowed between two digits (and before the first) before the entry ends.
    inter_digit_timeout_s: int = 5
    # Attempts at a valid extension before the not-found prompt and hang-up.
    max_tries: int = 3


@dataclass(frozen=True, slots=True)
class SmsSettings:
    """``[sms]``: text messages through X (SPEC §5)."""

    # Days a stored message's text is kept (intercepted, delivered, pending); a periodic job
    # deletes older texts (the message's report and charge stay).
    retention_days: int = 30
    # Seconds a message held for confirm-before-send waits for the tenant's confirmation before
    # it is discarded (and reported as discarded).
    confirm_expiry_s: int = 86_400


@dataclass(frozen=True, slots=True)
class OverloadSettings:
    """``[overload]``: when new work is refused so that calls already up keep working.

    New INVITEs get 503 with Retry-After while the engine is past one of its capacity limits
    (calls, media relay ports, SIP transactions, event-loop lag). Each source IP has a token
    bucket per request kind (INVITE, REGISTER, OPTIONS, other) for requests outside established
    calls; past it they are dropped silently, as a flood. Requests of established calls (short
    of the table's absolute bound), CANCELs of pending INVITEs and ACKs are always processed
    (engine.overload).
    """

    # Calls between INVITE and release above which new INVITEs get 503.
    max_calls: int = 10_000
    # Live SIP transactions at which new INVITEs get 503; other new requests outside calls are
    # refused at 5/4 of it, requests of established calls at twice it (the table's bounds).
    max_transactions: int = 200_000
    # How late SIP is served — a timer's lateness or a probe's wait in the SIP socket's queue,
    # sustained over three 50 ms samples — above which new INVITEs get 503.
    max_loop_lag_ms: int = 200
    # Retry-After (seconds) of those 503s (RFC 3261 §21.5.4).
    retry_after_s: int = 5
    # Token bucket per source IP and request kind: sustained rate (0: no per-source limit) ...
    source_rate_per_s: int = 3000
    # ... and the burst allowed above it.
    source_burst: int = 6000
    # Sources remembered by the per-source limiter; the oldest entry is evicted when full.
    max_sources: int = 10_000
    # Inbound TCP connections accepted at once; further connections are closed at once.
    max_tcp_connections: int = 1024
    # Seconds between two full garbage collections of the serving process (engine.gc_policy):
    # each walks every live object, pausing the event loop, and should find nothing. 0: never.
    full_gc_interval_s: int = 600
    # ... run only when its expected pause is at most this (ms); a longer one waits for less load.
    max_gc_pause_ms: int = 100


@dataclass(frozen=True, slots=True)
class LogSettings:
    """``[log]``: level and rendering of the structured logs (stderr)."""

    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.JSON
    # The serving process writes its lines out in batches every batch_ms (one write for many
    # lines); 0 writes each line at once.
    batch_ms: int = 50


@dataclass(frozen=True, slots=True)
class TimeSettings:
    """``[time]``: the zone of local times in reports and exports (the store is UTC)."""

    zone: str = "Asia/Shanghai"

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        """The configured zone (validated when the settings were loaded)."""
        return zoneinfo.ZoneInfo(self.zone)


@dataclass(frozen=True, slots=True)
class TrunkSettings:
    """One ``[[trunks]]`` entry: a carrier SIP trunk."""

    name: str
    outbound: HostPort
    inbound_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    transport: Transport = Transport.UDP
    number_format: NumberFormat = NumberFormat.NATIONAL
    # Digest credentials for 401/407 challenges of outbound legs (RFC 3261 §22); both or none.
    auth_username: str | None = None
    auth_password: str | None = field(default=None, repr=False)

    def allows(self, address: str) -> bool:
        """True when a packet from ``address`` may enter through this trunk (CIDR ACL)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.inbound_cidrs)


@dataclass(frozen=True, slots=True)
class Settings:
    """All settings of one maskline process; ``Settings()`` is the all-defaults configuration."""

    sip: SipSettings = field(default_factory=SipSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    cdr: CdrSettings = field(default_factory=CdrSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    ivr: IvrSettings = field(default_factory=IvrSettings)
    sms: SmsSettings = field(default_factory=SmsSettings)
    overload: OverloadSettings = field(default_factory=OverloadSettings)
    log: LogSettings = field(default_factory=LogSettings)
    time: TimeSettings = field(default_factory=TimeSettings)
    trunks: tuple[TrunkSettings, ...] = ()


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class _EnvValue:
    """A value that came from an environment variable rather than the file.

    Kept apart so that a key expecting a string gets the variable's text (an operator token
    ``12345`` stays a string; a quoted ``"UTC"`` is unquoted) while other keys get the TOML
    reading of it.
    """

    variable: str
    raw: str
    parsed: object


_T = TypeVar("_T")
_E = TypeVar("_E", bound=StrEnum)


class _Table:
    """Typed reads from one TOML table; remembers which keys were read so leftovers are errors."""

    def __init__(self, path: str, data: Mapping[str, object]) -> None:
        self._path = path
        self._data = data
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def _raw(self, name: str) -> object | None:
        self._seen.add(name)
        return self._data.get(name)

    def _fail(self, name: str, value: object, problem: str) -> ConfigError:
        if isinstance(value, _EnvValue):
            problem = f"{problem} (from environment variable {value.variable})"
        return ConfigError(self.key(name), problem)

    def get(self, name: str, *, kind: type[_T], default: _T | None, what: str) -> _T | None:
        value = self._raw(name)
        if value is None:
            return default
        plain = value
        if isinstance(value, _EnvValue):
            if kind is str:
                # A quoted TOML string is unquoted; anything else (12345, true) is the text.
                plain = value.parsed if isinstance(value.parsed, str) else value.raw
            else:
                plain = value.parsed
        # bool is an int subclass; `port = true` must not read as port 1.
        if not isinstance(plain, kind) or (kind is int and isinstance(plain, bool)):
            raise self._fail(name, value, f"must be {what}, got {_describe(plain)}")
        return plain

    def string(self, name: str, default: str) -> str:
        value = self.get(name, kind=str, default=default, what="a string")
        assert value is not None
        return value

    def required_string(self, name: str) -> str:
        value = self.get(name, kind=str, default=None, what="a string")
        if value is None:
            raise ConfigError(self.key(name), "is required")
        return value

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        value = self.get(name, kind=int, default=default, what="an integer")
        assert value is not None
        if not low <= value <= high:
            raise self._fail(name, self._data.get(name), f"must be in {low}..{high}, got {value}")
        return value

    def converted(self, name: str, default: _T, convert: Callable[[str], _T]) -> _T:
        """A string value turned into something richer; ``convert`` raises ValueError."""
        text = self.get(name, kind=str, default=None, what="a string")
        if text is None:
            return default
        try:
            return convert(text)
        except ValueError as err:
            raise self._fail(name, self._data.get(name), str(err)) from None

    def choice(self, name: str, default: _E, enum: type[_E]) -> _E:
        text = self.get(name, kind=str, default=None, what="a string")
        if text is None:
            return default
        try:
            return enum(text)
        except ValueError:
            allowed = ", ".join(member.value for member in enum)
            raise self._fail(name, self._data.get(name), f"must be one of {allowed}") from None

    def finish(self) -> None:
        """Raise for the first key that was never read: it is unknown."""
        for name, value in self._data.items():
            if name not in self._seen:
                raise self._fail(name, value, "unknown key")


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _host_port(text: str) -> HostPort:
    return HostPort.parse(text)


def _ip_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def _path(text: str) -> Path:
    if not text:
        raise ValueError("must not be empty")
    return Path(text)


def _zone(text: str) -> str:
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {text!r} (an IANA name such as Asia/Shanghai)"
        ) from None
    return text


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _section(data: Mapping[str, object], name: str) -> _Table:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(name, f"must be a table ([{name}]), got {_describe(value)}")
    return _Table(name, value)


def _read_sip(table: _Table) -> SipSettings:
    d = SipSettings()
    listen = table.converted("listen", d.listen, _host_port)
    t1_ms = table.integer("t1_ms", d.t1_ms, low=1, high=60_000)
    t2_ms = table.integer("t2_ms", d.t2_ms, low=1, high=600_000)
    t4_ms = table.integer("t4_ms", d.t4_ms, low=1, high=600_000)
    if t2_ms < t1_ms:
        raise ConfigError(table.key("t2_ms"), f"must be at least t1_ms ({t1_ms}), got {t2_ms}")
    max_bytes = table.integer(
        "max_message_bytes", d.max_message_bytes, low=_MIN_MESSAGE_BYTES, high=_MAX_MESSAGE_BYTES
    )
    max_call_duration_s = table.integer(
        "max_call_duration_s", d.max_call_duration_s, low=10, high=7 * 24 * 3600
    )
    # RFC 4028 §4: no session interval below 90 s.
    session_expires_s = table.integer(
        "session_expires_s", d.session_expires_s, low=90, high=7 * 24 * 3600
    )
    min_se_s = table.integer("min_se_s", d.min_se_s, low=90, high=7 * 24 * 3600)
    if min_se_s > session_expires_s:
        raise ConfigError(
            table.key("min_se_s"),
            f"must be at most session_expires_s ({session_expires_s}), got {min_se_s}",
        )
    table.finish()
    return SipSettings(
        listen=listen,
        t1_ms=t1_ms,
        t2_ms=t2_ms,
        t4_ms=t4_ms,
        max_message_bytes=max_bytes,
        max_call_duration_s=max_call_duration_s,
        session_expires_s=session_expires_s,
        min_se_s=min_se_s,
    )


def _read_api(table: _Table) -> ApiSettings:
    d = ApiSettings()
    listen = table.converted("listen", d.listen, _host_port)
    token = table.converted("operator_token", None, _non_empty)
    master_key_file = table.converted("master_key_file", None, _path)
    table.finish()
    return ApiSettings(listen=listen, operator_token=token, master_key_file=master_key_file)


def _read_media(table: _Table) -> MediaSettings:
    d = MediaSettings()
    address = table.converted("address", d.address, _ip_address)
    port_min = table.integer("port_min", d.port_min, low=_MIN_PORT, high=_MAX_PORT)
    port_max = table.integer("port_max", d.port_max, low=_MIN_PORT, high=_MAX_PORT)
    if port_min > port_max:
        raise ConfigError(
            table.key("port_min"), f"must not exceed port_max ({port_max}), got {port_min}"
        )
    inactivity = table.integer(
        "inactivity_timeout_s", d.inactivity_timeout_s, low=1, high=24 * 3600
    )
    table.finish()
    return MediaSettings(
        address=address, port_min=port_min, port_max=port_max, inactivity_timeout_s=inactivity
    )


def _read_recording(table: _Table) -> RecordingSettings:
    d = RecordingSettings()
    settings = RecordingSettings(
        dir=table.converted("dir", d.dir, _path),
        retention_days=table.integer("retention_days", d.retention_days, low=1, high=36500),
        url_ttl_s=table.integer("url_ttl_s", d.url_ttl_s, low=10, high=7 * 86400),
    )
    table.finish()
    return settings


def _read_audio(table: _Table) -> AudioSettings:
    d = AudioSettings()
    settings = AudioSettings(
        prompts_dir=table.converted("prompts_dir", d.prompts_dir, _path),
        ringback_dir=table.converted("ringback_dir", d.ringback_dir, _path),
        tts_voice=table.converted("tts_voice", d.tts_voice, _non_empty),
    )
    table.finish()
    return settings


def _read_ivr(table: _Table) -> IvrSettings:
    d = IvrSettings()
    settings = IvrSettings(
        inter_digit_timeout_s=table.integer(
            "inter_digit_timeout_s", d.inter_digit_timeout_s, low=1, high=60
        ),
        max_tries=table.integer("max_tries", d.max_tries, low=1, high=10),
    )
    table.finish()
    return settings


def _read_sms(table: _Table) -> SmsSettings:
    d = SmsSettings()
    settings = SmsSettings(
        retention_days=table.integer("retention_days", d.retention_days, low=1, high=3650),
        confirm_expiry_s=table.integer(
            "confirm_expiry_s", d.confirm_expiry_s, low=10, high=30 * 86_400
        ),
    )
    table.finish()
    return settings


def _read_overload(table: _Table) -> OverloadSettings:
    d = OverloadSettings()
    settings = OverloadSettings(
        max_calls=table.integer("max_calls", d.max_calls, low=1, high=10_000_000),
        max_transactions=table.integer(
            "max_transactions", d.max_transactions, low=100, high=100_000_000
        ),
        max_loop_lag_ms=table.integer("max_loop_lag_ms", d.max_loop_lag_ms, low=1, high=60_000),
        retry_after_s=table.integer("retry_after_s", d.retry_after_s, low=1, high=3600),
        source_rate_per_s=table.integer(
            "source_rate_per_s", d.source_rate_per_s, low=0, high=10_000_000
        ),
        source_burst=table.integer("source_burst", d.source_burst, low=1, high=100_000_000),
        max_sources=table.integer("max_sources", d.max_sources, low=1, high=10_000_000),
        max_tcp_connections=table.integer(
            "max_tcp_connections", d.max_tcp_connections, low=1, high=1_000_000
        ),
        full_gc_interval_s=table.integer(
            "full_gc_interval_s", d.full_gc_interval_s, low=0, high=86_400
        ),
        max_gc_pause_ms=table.integer("max_gc_pause_ms", d.max_gc_pause_ms, low=1, high=60_000),
    )
    table.finish()
    return settings


def _read_log(table: _Table) -> LogSettings:
    d = LogSettings()
    level = table.choice("level", d.level, LogLevel)
    fmt = table.choice("format", d.format, LogFormat)
    batch_ms = table.integer("batch_ms", d.batch_ms, low=0, high=1000)
    table.finish()
    return LogSettings(level=level, format=fmt, batch_ms=batch_ms)


def _read_trunk(table: _Table) -> TrunkSettings:
    name = _non_empty_required(table, "name")
    outbound = table.converted("outbound", None, _host_port)
    if outbound is None:
        raise ConfigError(table.key("outbound"), "is required")
    cidrs = _read_cidrs(table)
    transport = table.choice("transport", Transport.UDP, Transport)
    number_format = table.choice("number_format", NumberFormat.NATIONAL, NumberFormat)
    auth_username = table.get("auth_username", kind=str, default=None, what="a string")
    auth_password = table.get("auth_password", kind=str, default=None, what="a string")
    if (auth_username is None) != (auth_password is None):
        missing = "auth_password" if auth_password is None else "auth_username"
        raise ConfigError(table.key(missing), "is required when the other credential is set")
    table.finish()
    return TrunkSettings(
        name=name,
        outbound=outbound,
        inbound_cidrs=cidrs,
        transport=transport,
        number_format=number_format,
        auth_username=auth_username,
        auth_password=auth_password,
    )


def _non_empty_required(table: _Table, name: str) -> str:
    text = table.required_string(name)
    if not text.strip():
        raise ConfigError(table.key(name), "must not be empty")
    return text


def _read_cidrs(table: _Table) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    items = table.get("inbound_cidrs", kind=list, default=[], what="an array of CIDR strings")
    assert items is not None
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for index, item in enumerate(items):
        key = f"{table.key('inbound_cidrs')}[{index}]"
        if not isinstance(item, str):
            raise ConfigError(key, f"must be a CIDR string, got {_describe(item)}")
        try:
            # strict=False: "10.1.2.3/8" means the network 10.0.0.0/8, as in most ACL syntaxes.
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(key, f"{item!r} is not a CIDR (e.g. 10.0.0.0/8)") from None
    return tuple(networks)


def _read_trunks(data: Mapping[str, object]) -> tuple[TrunkSettings, ...]:
    value = data.get("trunks", [])
    if not isinstance(value, list):
        raise ConfigError(
            "trunks", f"must be an array of tables ([[trunks]]), got {_describe(value)}"
        )
    trunks: list[TrunkSettings] = []
    names: set[str] = set()
    for index, item in enumerate(value):
        path = f"trunks[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(path, f"must be a table, got {_describe(item)}")
        trunk = _read_trunk(_Table(path, item))
        if trunk.name in names:
            raise ConfigError(f"{path}.name", f"duplicate trunk name {trunk.name!r}")
        names.add(trunk.name)
        trunks.append(trunk)
    return tuple(trunks)


_SECTIONS: Final = (
    "sip", "api", "store", "media", "cdr", "recording", "audio", "ivr", "sms", "overload", "log",
    "time", "trunks",
)  # fmt: skip


def _build(data: Mapping[str, object]) -> Settings:
    for name, value in data.items():
        if name not in _SECTIONS:
            problem = "unknown section"
            if isinstance(value, _EnvValue):
                problem += f" (from environment variable {value.variable})"
            raise ConfigError(name, problem)
    sip = _read_sip(_section(data, "sip"))
    api = _read_api(_section(data, "api"))
    store_table = _section(data, "store")
    store = StoreSettings(path=store_table.converted("path", StoreSettings().path, _path))
    store_table.finish()
    media = _read_media(_section(data, "media"))
    cdr_table = _section(data, "cdr")
    cdr = CdrSettings(dir=cdr_table.converted("dir", CdrSettings().dir, _path))
    cdr_table.finish()
    recording = _read_recording(_section(data, "recording"))
    audio = _read_audio(_section(data, "audio"))
    ivr = _read_ivr(_section(data, "ivr"))
    sms = _read_sms(_section(data, "sms"))
    overload = _read_overload(_section(data, "overload"))
    log = _read_log(_section(data, "log"))
    time_table = _section(data, "time")
    time = TimeSettings(zone=time_table.converted("zone", TimeSettings().zone, _zone))
    time_table.finish()
    return Settings(
        sip=sip,
        api=api,
        store=store,
        media=media,
        cdr=cdr,
        recording=recording,
        audio=audio,
        ivr=ivr,
        sms=sms,
        overload=overload,
        log=log,
        time=time,
        trunks=_read_trunks(data),
    )


# --------------------------------------------------------------------------- environment


def _parse_env_value(raw: str) -> object:
    """The TOML reading of ``raw`` (``5070`` → int, ``true`` → bool, ``["a"]`` → list), else raw."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(data: dict[str, object], env: Mapping[str, str]) -> None:
    """Overlay ``MASKLINE_SECTION__KEY`` (and ``MASKLINE_TRUNKS__<i>__KEY``) variables.

    Variables with the prefix but without the double-underscore separator are not settings and
    are left alone, so other tools may use ``MASKLINE_*`` names of their own.
    """
    for variable in sorted(env):
        if not variable.startswith(ENV_PREFIX) or _ENV_SEPARATOR not in variable:
            continue
        parts = variable[len(ENV_PREFIX) :].lower().split(_ENV_SEPARATOR)
        value = _EnvValue(
            variable=variable, raw=env[variable], parsed=_parse_env_value(env[variable])
        )
        if any(not part for part in parts):
            raise ConfigError(variable, "malformed override name (want MASKLINE_SECTION__KEY)")
        if parts[0] == "trunks":
            _apply_trunk_env(data, parts=parts, value=value)
            continue
        if len(parts) != 2:
            raise ConfigError(
                ".".join(parts), f"unknown key (from environment variable {variable})"
            )
        section_name, key = parts
        if section_name not in _SECTIONS:
            raise ConfigError(
                f"{section_name}.{key}", f"unknown key (from environment variable {variable})"
            )
        section = data.setdefault(section_name, {})
        if not isinstance(section, dict):
            # Let _build report the misuse of the section itself.
            continue
        section[key] = value


def _apply_trunk_env(data: dict[str, object], *, parts: list[str], value: _EnvValue) -> None:
    if len(parts) != 3 or not parts[1].isdigit():
        raise ConfigError(
            ".".join(parts),
            f"trunk overrides are MASKLINE_TRUNKS__<index>__<KEY> (from {value.variable})",
        )
    index, key = int(parts[1]), parts[2]
    trunks = data.get("trunks", [])
    if not isinstance(trunks, list) or index >= len(trunks) or not isinstance(trunks[index], dict):
        raise ConfigError(
            f"trunks[{index}]",
            f"no such trunk in the file (from environment variable {value.variable})",
        )
    trunks[index][key] = value


# --------------------------------------------------------------------------- entry point


def load_settings(path: str | Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Load settings from the TOML file at ``path`` (None: all defaults), then apply ``env``.

    ``env`` is usually ``os.environ``; None means no overrides (tests stay hermetic).
    Raises :class:`ConfigError` naming the offending key.
    """
    data: dict[str, object] = {}
    if path is not None:
        try:
            with Path(path).open("rb") as handle:
                data = tomllib.load(handle)
        except OSError as err:
            raise ConfigError(
                "", f"cannot read config file {str(path)!r}: {err.strerror}"
            ) from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError("", f"{path}: invalid TOML: {err}") from None
    if env is not None:
        _apply_env(data, env)
    return _build(data)
