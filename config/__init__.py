"""Settings (TOML + env overrides, unknown keys are errors); later tariffs and city data.

Public API::

    from config import load_settings, ConfigError
    settings = load_settings("config/maskline.example.toml", env=os.environ)
    settings.sip.listen_host, settings.sip.listen_port
"""

from config.settings import (
    ENV_PREFIX,
    EXAMPLE_CONFIG_PATH,
    ApiSettings,
    CdrSettings,
    ConfigError,
    HostPort,
    LogFormat,
    LogLevel,
    LogSettings,
    MediaSettings,
    NumberFormat,
    RecordingSettings,
    Settings,
    SipSettings,
    StoreSettings,
    TimeSettings,
    Transport,
    TrunkSettings,
    load_settings,
)

__all__ = [
    "ENV_PREFIX",
    "EXAMPLE_CONFIG_PATH",
    "ApiSettings",
    "CdrSettings",
    "ConfigError",
    "HostPort",
    "LogFormat",
    "LogLevel",
    "LogSettings",
    "MediaSettings",
    "NumberFormat",
    "RecordingSettings",
    "Settings",
    "SipSettings",
    "StoreSettings",
    "TimeSettings",
    "Transport",
    "TrunkSettings",
    "load_settings",
]
