"""Tenants and their API keys (create, key pairs derived under the master key, authentication).

A service of the control plane: constructed by :class:`api.control.ControlPlane` with itself,
so it shares the database, the clock and the tenant scoping (``tenant`` None = operator; another
tenant's resource answers as one that does not exist).

Access keys follow the reference service's shape: an ``AccessKeyId`` (here ``MLAK`` + 20 base62
characters) and an ``AccessKeySecret`` of 30 alphanumerics.

**Secrets are derived, not stored and not hashed.** The Dyplsapi RPC API authenticates a request
by an HMAC signature computed with the secret (DYPLSAPI.md §3/§4), so the server must be able to
recompute the secret itself: a password-style hash of it would be useless for verifying a
signature. Storing the secret in the database would make a database leak (a backup, a copied
file) a leak of every tenant's credentials. So each key row holds only a random ``salt`` and the
secret is ``HMAC-SHA256(master_key, "maskline/access-key/v1" NUL access_key_id NUL salt)``
rendered as 30 base62 characters (~178 bits). The 32-byte master key lives in its own file
(``[api] master_key_file``, default ``master.key`` beside the database), created with mode 0600
on first start; a database without that file reveals no secret.

Consequences an operator must know:

- The master key file must be backed up (separately from the database) and kept: if it is lost,
  a new one is created at the next start and **every existing secret stops working** (the keys
  still exist; the operator issues new ones with ``tenant key-create``). A start that creates a
  master key while keys exist logs ``master_key_created_with_existing_keys`` at error level.
- A master key file with any other content than 64 hex digits stops the start-up with
  :class:`MasterKeyError` naming the file; it is never silently replaced (that would invalidate
  every key just the same).
- A secret is shown once, in the answer that creates its key; nothing reads it back later.

The RPC signature verifier needs a synchronous lookup (:meth:`Tenants.secret_for`), so the keys
(id → tenant, salt, status) and the tenants' statuses are kept in memory, loaded at start-up and
updated by this service's own writes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import string
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final

import store.tenants as tenant_store
from api.errors import ControlError, ErrorCode, InvalidInput, NotFound
from api.rpc_signing import RpcSignatureError
from engine.logging import get_logger
from store import ConflictError
from store.tenants import ApiKeyRow, KeyStatus, TenantRow, TenantStatus

if TYPE_CHECKING:
    from api.control import ControlPlane

__all__ = [
    "ACCESS_KEY_PREFIX",
    "MASTER_KEY_BYTES",
    "MAX_TENANT_NAME_CHARS",
    "SECRET_CHARS",
    "KeyView",
    "MasterKeyError",
    "NewKey",
    "NewTenant",
    "OperatorOnly",
    "TenantView",
    "Tenants",
    "derive_secret",
    "load_master_key",
    "new_access_key_id",
]

_log = get_logger("api.tenants")

ACCESS_KEY_PREFIX: Final = "MLAK"
ACCESS_KEY_RANDOM_CHARS: Final = 20
SECRET_CHARS: Final = 30
MASTER_KEY_BYTES: Final = 32
MAX_TENANT_NAME_CHARS: Final = 128
_BASE62: Final = string.digits + string.ascii_uppercase + string.ascii_lowercase
# Domain separation: the master key may one day derive other things; v1 names this derivation.
_DERIVATION_LABEL: Final = b"maskline/access-key/v1"
_TENANT_ID_DIGITS: Final = 12
_ID_ATTEMPTS: Final = 5
_LOCAL_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
_FORBIDDEN: Final = "FORBIDDEN"


class MasterKeyError(Exception):
    """The master key file is unreadable or malformed: the server must not start."""


class OperatorOnly(ControlError):
    """A tenant called an operator-only use case (403 ``FORBIDDEN``); nothing was written."""

    status: ClassVar[int] = 403

    def __init__(self, what: str) -> None:
        super().__init__(_FORBIDDEN, f"{what} is reserved to the operator")


# ------------------------------------------------------------------------------- key material


def load_master_key(path: Path) -> tuple[bytes, bool]:
    """The master key in ``path`` and whether it was just created.

    A missing file is created atomically with 32 random bytes as 64 hex digits: written and
    fsynced under a temporary name (``O_CREAT | O_EXCL``, mode 0600), then hard-linked to
    ``path`` (which fails if ``path`` exists: a concurrent creator wins and its key is read) and
    the directory fsynced, so ``path`` never exists half-written, even after a crash. Any other
    content than 64 hex digits (surrounding whitespace allowed) raises :class:`MasterKeyError`.
    """
    try:
        return _read_master_key(path), False
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(MASTER_KEY_BYTES)
    content = (key.hex() + "\n").encode("ascii")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_new_file(temporary, content)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return _read_master_key(path), False
        except OSError:
            # A file system without hard links: create the file itself exclusively instead.
            try:
                _write_new_file(path, content)
            except FileExistsError:
                return _read_master_key(path), False
    except MasterKeyError:
        raise
    except OSError as error:
        raise MasterKeyError(f"cannot create the master key file {path}: {error}") from error
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(path.parent)
    return key, True


def _write_new_file(path: Path, content: bytes) -> None:
    """Create ``path`` (``FileExistsError`` if it exists), mode 0600, with ``content``, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        written = 0
        while written < len(content):
            written += os.write(fd, content[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_master_key(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as error:
        raise MasterKeyError(f"cannot read the master key file {path}: {error}") from error
    text = raw.strip()
    if len(text) != 2 * MASTER_KEY_BYTES or any(c not in b"0123456789abcdefABCDEF" for c in text):
        raise MasterKeyError(
            f"the master key file {path} must hold exactly {2 * MASTER_KEY_BYTES} hex digits "
            f"({len(raw)} bytes found); restore it from a backup (or, if no access key was ever "
            "issued, delete it and a new one is created). It is not regenerated automatically: "
            "a new master key invalidates every tenant's access key secret"
        )
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = 0
    if mode & 0o077:
        _log.warning("master_key_file_readable_by_others", path=str(path), mode=oct(mode & 0o777))
    return bytes.fromhex(text.decode("ascii"))


def _fsync_directory(directory: Path) -> None:
    """Make the new file's directory entry durable (best effort where directories can't open)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _base62(value: int, width: int) -> str:
    digits = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        digits.append(_BASE62[digit])
    return "".join(digits)


def derive_secret(master_key: bytes, access_key_id: str, salt: str) -> str:
    """The 30-character base62 secret of a key (HMAC-SHA256 under the master key)."""
    message = b"\0".join((_DERIVATION_LABEL, access_key_id.encode(), salt.encode()))
    digest = hmac.new(master_key, message, hashlib.sha256).digest()
    # 256 bits reduced to 30 base62 digits (62**30 ~ 2**178.6); the modulo bias is ~2**-77.
    return _base62(int.from_bytes(digest, "big"), SECRET_CHARS)


def new_access_key_id() -> str:
    """``MLAK`` + 20 random base62 characters (~119 bits)."""
    return ACCESS_KEY_PREFIX + "".join(
        secrets.choice(_BASE62) for _ in range(ACCESS_KEY_RANDOM_CHARS)
    )


def _new_tenant_id() -> str:
    return "T" + str(secrets.randbelow(10**_TENANT_ID_DIGITS)).zfill(_TENANT_ID_DIGITS)


def _tenant_name(raw: str) -> str:
    name = raw.strip()
    if not name:
        raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "name must not be empty")
    if len(name) > MAX_TENANT_NAME_CHARS:
        raise InvalidInput(
            ErrorCode.PARAMETER_ILLEGAL,
            f"name is at most {MAX_TENANT_NAME_CHARS} characters, got {len(name)}",
        )
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in name):
        raise InvalidInput(
            ErrorCode.PARAMETER_ILLEGAL, "name must not contain control or format characters"
        )
    return name


def _tenant_not_found(tenant_id: str) -> NotFound:
    return NotFound(ErrorCode.TENANT_NOT_EXIST, f"no tenant {tenant_id!r}")


def _key_not_found(access_key_id: str) -> NotFound:
    return NotFound("ACCESS_KEY_NOT_EXIST", f"no access key {access_key_id!r}")


# ------------------------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class NewTenant:
    """A created tenant with its first key pair (the secret is shown this once)."""

    tenant_id: str
    name: str
    access_key_id: str
    access_key_secret: str


@dataclass(frozen=True, slots=True)
class NewKey:
    """A created key pair (the secret is shown this once)."""

    access_key_id: str
    access_key_secret: str


@dataclass(frozen=True, slots=True)
class KeyView:
    """An access key without its secret; times local (``YYYY-MM-DD HH:MM:SS``)."""

    access_key_id: str
    status: str
    created: str
    disabled: str | None


@dataclass(frozen=True, slots=True)
class TenantView:
    """A tenant and its keys (never secrets); ``created`` local."""

    tenant_id: str
    name: str
    status: str
    created: str
    keys: tuple[KeyView, ...]


@dataclass(frozen=True, slots=True)
class _KeyEntry:
    tenant_id: str
    salt: str
    active: bool


# ------------------------------------------------------------------------------- service


class Tenants:
    """Tenants and their API keys."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control
        self._master_key: bytes | None = None
        self._keys: dict[str, _KeyEntry] = {}
        # Tenants' statuses; a tenant missing here (created behind this service's back through
        # ``store.create_tenant``) is active, the column's default.
        self._tenant_status: dict[str, TenantStatus] = {}

    @property
    def master_key_path(self) -> Path:
        """The master key file: ``[api] master_key_file`` or ``master.key`` beside the database."""
        configured = self.control.master_key_path
        return (
            configured if configured is not None else self.control.db.path.with_name("master.key")
        )

    async def load(self) -> None:
        """Read (or create) the master key, then load every key and tenant status.

        Raises :class:`MasterKeyError` for a master key file that is not 64 hex digits.
        """
        path = self.master_key_path
        self._master_key, created = load_master_key(path)
        rows = await tenant_store.load_api_keys(self.control.db)
        self._keys = {
            row.access_key_id: _KeyEntry(row.tenant_id, row.salt, row.status is KeyStatus.ACTIVE)
            for row in rows
        }
        self._tenant_status = await tenant_store.load_tenant_statuses(self.control.db)
        if created and rows:
            _log.error(
                "master_key_created_with_existing_keys",
                path=str(path),
                keys=len(rows),
                hint="every existing access key secret is now invalid; restore the master key "
                "file from a backup or issue new keys (maskline tenant key-create)",
            )
        elif created:
            _log.info("master_key_created", path=str(path))
        _log.info("tenants_loaded", tenants=len(self._tenant_status), keys=len(self._keys))

    def _master(self) -> bytes:
        if self._master_key is None:
            raise RuntimeError("Tenants.load() has not run: no master key")
        return self._master_key

    def _local(self, epoch_s: float) -> str:
        return dt.datetime.fromtimestamp(epoch_s, tz=self.control.zone).strftime(_LOCAL_FORMAT)

    def _tenant_active(self, tenant_id: str) -> bool:
        return self._tenant_status.get(tenant_id, TenantStatus.ACTIVE) is TenantStatus.ACTIVE

    def _new_key_row(self, tenant_id: str, now: float) -> ApiKeyRow:
        return ApiKeyRow(
            access_key_id=new_access_key_id(),
            tenant_id=tenant_id,
            salt=secrets.token_hex(16),
            status=KeyStatus.ACTIVE,
            created_at=now,
        )

    def _remember(self, row: ApiKeyRow) -> None:
        self._keys[row.access_key_id] = _KeyEntry(
            row.tenant_id, row.salt, row.status is KeyStatus.ACTIVE
        )

    # --------------------------------------------------------------------- lookups (sync)

    def secret_for(self, access_key_id: str) -> str | None:
        """The secret of an active key (for the RPC signature verifier); None: no such key.

        Raises ``RpcSignatureError("InvalidAccessKeyId.Inactive", ..., 400)`` for a disabled key
        or a key of a suspended tenant.
        """
        entry = self._keys.get(access_key_id)
        if entry is None:
            return None
        if not entry.active or not self._tenant_active(entry.tenant_id):
            raise RpcSignatureError(
                "InvalidAccessKeyId.Inactive", "Specified access key is disabled.", 400
            )
        return derive_secret(self._master(), access_key_id, entry.salt)

    def tenant_of_key(self, access_key_id: str) -> str | None:
        """The tenant owning ``access_key_id`` (active or not), or None for an unknown key."""
        entry = self._keys.get(access_key_id)
        return None if entry is None else entry.tenant_id

    async def authenticate(self, access_key_id: str, secret: str) -> str | None:
        """The tenant of a valid (``access_key_id``, ``secret``) pair, else None.

        None too for a disabled key and for a key of a suspended tenant. The comparison is
        constant-time.
        """
        entry = self._keys.get(access_key_id)
        if entry is None:
            return None
        expected = derive_secret(self._master(), access_key_id, entry.salt)
        matches = hmac.compare_digest(expected.encode(), secret.encode())
        if not matches or not entry.active or not self._tenant_active(entry.tenant_id):
            return None
        return entry.tenant_id

    # --------------------------------------------------------------------- use cases

    async def create_tenant(self, name: str, *, tenant: str | None = None) -> NewTenant:
        """Create a tenant and its first key pair in one transaction (operator only)."""
        if tenant is not None:
            raise OperatorOnly("creating tenants")
        checked = _tenant_name(name)
        for attempt in range(_ID_ATTEMPTS):
            now = self.control.clock()
            row = TenantRow(_new_tenant_id(), checked, TenantStatus.ACTIVE, now)
            key = self._new_key_row(row.tenant_id, now)
            try:
                await tenant_store.insert_tenant_with_key(self.control.db, row, key)
            except ConflictError:  # a random id collided (tenant or key): draw again
                if attempt + 1 == _ID_ATTEMPTS:
                    raise
                continue
            break
        self._tenant_status[row.tenant_id] = row.status
        self._remember(key)
        _log.info("tenant_created", tenant_id=row.tenant_id, access_key_id=key.access_key_id)
        return NewTenant(
            tenant_id=row.tenant_id,
            name=row.name,
            access_key_id=key.access_key_id,
            access_key_secret=derive_secret(self._master(), key.access_key_id, key.salt),
        )

    async def create_key(self, tenant_id: str, *, tenant: str | None = None) -> NewKey:
        """A new key pair for ``tenant_id`` (operator only); ``NotFound(TENANT_NOT_EXIST)``."""
        if tenant is not None:
            raise OperatorOnly("creating access keys")
        for attempt in range(_ID_ATTEMPTS):
            key = self._new_key_row(tenant_id, self.control.clock())
            try:
                status = await tenant_store.insert_api_key(self.control.db, key)
            except ConflictError:
                if attempt + 1 == _ID_ATTEMPTS:
                    raise
                continue
            break
        if status is None:
            raise _tenant_not_found(tenant_id)
        self._tenant_status[tenant_id] = status
        self._remember(key)
        _log.info("access_key_created", tenant_id=tenant_id, access_key_id=key.access_key_id)
        return NewKey(
            access_key_id=key.access_key_id,
            access_key_secret=derive_secret(self._master(), key.access_key_id, key.salt),
        )

    async def set_key_status(
        self, access_key_id: str, active: bool, *, tenant: str | None = None
    ) -> None:
        """Enable or disable a key (operator only); ``NotFound(ACCESS_KEY_NOT_EXIST)``."""
        if tenant is not None:
            raise OperatorOnly("enabling and disabling access keys")
        status = KeyStatus.ACTIVE if active else KeyStatus.DISABLED
        row = await tenant_store.set_api_key_status(
            self.control.db, access_key_id, status, now=self.control.clock()
        )
        if row is None:
            raise _key_not_found(access_key_id)
        self._remember(row)
        _log.info("access_key_status", access_key_id=access_key_id, status=str(row.status))

    async def set_tenant_status(
        self, tenant_id: str, active: bool, *, tenant: str | None = None
    ) -> None:
        """Resume or suspend a tenant (operator only): a suspended tenant's keys authenticate
        nothing until it is resumed. ``NotFound(TENANT_NOT_EXIST)``."""
        if tenant is not None:
            raise OperatorOnly("suspending and resuming tenants")
        status = TenantStatus.ACTIVE if active else TenantStatus.SUSPENDED
        if not await tenant_store.set_tenant_status(self.control.db, tenant_id, status):
            raise _tenant_not_found(tenant_id)
        self._tenant_status[tenant_id] = status
        _log.info("tenant_status", tenant_id=tenant_id, status=str(status))

    async def list_tenants(self, *, tenant: str | None = None) -> list[TenantView]:
        """Every tenant with its keys, oldest first (operator only)."""
        if tenant is not None:
            raise OperatorOnly("listing tenants")
        rows = await tenant_store.list_tenants(self.control.db)
        return [await self._view(row) for row in rows]

    async def get_tenant(self, tenant_id: str, *, tenant: str | None = None) -> TenantView:
        """One tenant with its keys; a tenant sees only itself (others: TENANT_NOT_EXIST)."""
        if tenant is not None and tenant != tenant_id:
            raise _tenant_not_found(tenant_id)
        row = await tenant_store.get_tenant(self.control.db, tenant_id)
        if row is None:
            raise _tenant_not_found(tenant_id)
        return await self._view(row)

    async def _view(self, row: TenantRow) -> TenantView:
        keys = await tenant_store.list_api_keys(self.control.db, row.tenant_id)
        return TenantView(
            tenant_id=row.tenant_id,
            name=row.name,
            status=str(row.status),
            created=self._local(row.created_at),
            keys=tuple(
                KeyView(
                    access_key_id=key.access_key_id,
                    status=str(key.status),
                    created=self._local(key.created_at),
                    disabled=None if key.disabled_at is None else self._local(key.disabled_at),
                )
                for key in keys
            ),
        )
