"""Config layer: Connection URIs: encryption at rest, masking for display, and scrubbing secrets out of text."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from urllib.parse import quote, quote_plus

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.engine import URL, make_url

from tdsync.config.settings import Settings, private_dir
from tdsync.domain.errors import ConfigurationError, InvalidDatabaseConnection

MASK = "*****"
KEY_FILE = "encryption.key"

# SQLAlchemy backend name -> the dialect tdsync reports.
DIALECTS = {
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mariadb",
    "sqlite": "sqlite",
    "duckdb": "duckdb",
}


def parse_uri(connection_uri: str) -> URL:
    """Parse and check a connection URI; the error never repeats the URI (it may hold a password)."""
    try:
        url = make_url(connection_uri.strip())
    except Exception as exc:  # sqlalchemy raises ArgumentError, ValueError...
        raise InvalidDatabaseConnection(
            "connection_uri is not a valid database URI",
            {"reason": scrub(str(exc), connection_uri)},
        ) from None
    if url.get_backend_name() not in DIALECTS:
        raise InvalidDatabaseConnection(
            f"unsupported dialect {url.get_backend_name()!r}",
            {"supported": sorted(DIALECTS)},
        )
    check_options(url)
    return url


# The URI query options tdsync passes on to each driver; any other is refused. None of them names
# a file, a socket or a service file of tdsync's host, or makes the driver run SQL: libpq's
# `passfile`, `sslkey`, `sslcert`, `sslrootcert`, `sslcrl`, `service`; PyMySQL's `init_command`,
# `local_infile`, `read_default_file`, `unix_socket`, `ssl_ca`; DuckDB's settings (duckdb_engine
# turns each key into an unquoted `SET key = ...`); SQLite's URI parameters (tdsync opens the
# file `mode=ro` itself). Passwords given as options stay allowed: they are masked like the others.
ALLOWED_OPTIONS: dict[str, frozenset[str]] = {
    "postgresql": frozenset(
        {
            "sslmode",
            "application_name",
            "connect_timeout",
            "target_session_attrs",
            "options",  # only `-c name=value` of PG_SETTINGS, see _check_pg_options
            "host",  # a host name or address, never a socket directory
            "hostaddr",
            "port",
            "user",
            "password",
            "client_encoding",
            "channel_binding",
            "gssencmode",
            "sslsni",
            "ssl_min_protocol_version",
            "keepalives",
            "keepalives_idle",
            "keepalives_interval",
            "keepalives_count",
            "tcp_user_timeout",
        }
    ),
    "mysql": frozenset(
        {
            "charset",
            "program_name",
            "ssl_check_hostname",  # TLS checked against the system's CAs: no certificate file
            "ssl_verify_cert",
            "ssl_verify_identity",
            "user",
            "password",
            "passwd",
        }
    ),
    "sqlite": frozenset(),
    "duckdb": frozenset(),
}
ALLOWED_OPTIONS["mariadb"] = ALLOWED_OPTIONS["mysql"]

# Server settings a PostgreSQL `options=-c name=value` may carry: where to look and how long to
# wait. tdsync's own (statement timeout, read-only transactions) are appended after them and win.
PG_SETTINGS = frozenset(
    {
        "search_path",
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "timezone",
        "datestyle",
        "intervalstyle",
        "role",
    }
)


def check_options(url: URL) -> None:
    """Refuse a URI option that is not on its dialect's allow-list, or a host that is a path."""
    backend = url.get_backend_name()
    allowed = ALLOWED_OPTIONS[backend]
    refused = sorted(k for k in url.query if k.lower() not in allowed)
    if refused:
        _refuse(
            refused,
            "tdsync only passes its allowed options to a source: "
            f"{', '.join(sorted(allowed)) or 'none for this dialect'}",
        )
    if backend == "postgresql":
        # No host, or a path, means a Unix socket: a local server reached as tdsync's own OS user.
        hosts = [url.host or ""] + [h for v in _values(url, "host") for h in v.split(",")]
        if not url.host or any(h.strip().startswith("@") or "/" in h for h in hosts):
            _refuse(["host"], "a host must be a name or an address, not a socket directory")
        for value in _values(url, "options"):
            _check_pg_options(value)


def _check_pg_options(value: str) -> None:
    """`-c name=value` items (or `--name=value`) of PG_SETTINGS, no escapes."""
    words = value.split()
    ok = "\\" not in value
    while ok and words:
        word = words.pop(0)
        if word == "-c" and words:
            word = words.pop(0)
        elif word.startswith(("-c", "--")):
            word = word[2:]
        else:
            ok = False
            break
        name, sep, setting = word.partition("=")
        ok = bool(sep and setting) and name.lower() in PG_SETTINGS
    if not ok:
        _refuse(
            ["options"],
            "options may only set " + ", ".join(sorted(PG_SETTINGS)) + " (as -c name=value)",
        )


def _values(url: URL, key: str) -> list[str]:
    value = url.query.get(key)
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _refuse(options: list[str], why: str) -> None:
    raise InvalidDatabaseConnection(
        f"connection option(s) not allowed: {', '.join(options)} ({why})",
        {"refused_options": options},
    )


def dialect_of(connection_uri: str) -> str:
    return DIALECTS[parse_uri(connection_uri).get_backend_name()]


# Drivers (psycopg2, pymysql...) also take the password as a query parameter.
_PASSWORD_PARAMS = {"password", "passwd", "pwd"}


def mask_uri(connection_uri: str) -> str:
    """`postgresql://user:*****@host:5432/db`: the form every output shows."""
    try:
        url = make_url(connection_uri)
    except Exception:
        return MASK
    hidden = [k for k in url.query if k.lower() in _PASSWORD_PARAMS]
    if hidden:
        url = url.update_query_dict({k: MASK for k in hidden})
    # Setting the password to MASK would render it URL-quoted (%2A...); SQLAlchemy's own
    # hidden form is `***`, and a rendered URL has no other literal `*` (it quotes them).
    rendered = url.render_as_string(hide_password=True)
    if url.password is not None:
        rendered = rendered.replace(":***@", f":{MASK}@", 1)
    return rendered.replace(quote(MASK, safe=""), MASK)


def keep_stored_password(connection_uri: str, stored_uri: str) -> str:
    """The URI to store when a client sends one back: a masked password (in the user info or as a
    query option) means "the stored one", as every API response shows it masked.

    Only for the same user at the same host: the stored password never goes to another server or
    account (InvalidDatabaseConnection). A URI without a mask is returned as it is."""
    url = parse_uri(connection_uri)
    masked_options = [
        k for k, v in url.query.items() if v == MASK and k.lower() in _PASSWORD_PARAMS
    ]
    if url.password != MASK and not masked_options:
        return connection_uri
    stored = make_url(stored_uri)
    moved = [
        part
        for part, new, old in (
            ("user", url.username, stored.username),
            ("host", url.host, stored.host),
            ("port", url.port, stored.port),
            ("dialect", url.get_backend_name(), stored.get_backend_name()),
        )
        if new != old
    ]
    if moved:
        raise InvalidDatabaseConnection(
            f"connection_uri has a masked password ({MASK}) but another {', '.join(moved)}: "
            "give the password in full",
            {"changed": moved},
        )
    if url.password == MASK:
        url = url.set(password=stored.password)
    if masked_options:
        url = url.update_query_dict({k: stored.query.get(k) for k in masked_options})
        url = url.difference_update_query([k for k in masked_options if k not in stored.query])
    return url.render_as_string(hide_password=False)


def secrets_in(connection_uri: str) -> list[str]:
    """Every spelling of the URI's password that could leak into a message."""
    try:
        url = make_url(connection_uri)
        passwords = [url.password] + [
            v for k, v in url.query.items() if k.lower() in _PASSWORD_PARAMS
        ]
    except Exception:
        passwords = []
    found = {connection_uri}
    for password in passwords:
        for value in [password] if isinstance(password, str) else password or []:
            found |= {value, quote(value, safe=""), quote_plus(value)}
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(text: str, *connection_uris: str) -> str:
    """Remove the passwords (and whole URIs) of the given connections from a message.

    A short password is replaced only where it stands as a token of its own: replacing every
    occurrence of `o` would turn "connection" into "c*****nnecti*****n", and the holes would spell
    it out. One of LONG_SECRET characters or more is replaced wherever it appears (inside a
    driver's run-on text too): no ordinary word contains it by chance."""
    for uri in connection_uris:
        for secret in secrets_in(uri):
            text = _secret_pattern(secret).sub(MASK, text)
    # Belt and braces: any user:password@ or password= left in a URL-looking string.
    text = re.sub(r"(://[^:/@\s]+:)[^@\s]+@", rf"\1{MASK}@", text)
    return _QUERY_PASSWORD.sub(rf"\1{MASK}", text)


LONG_SECRET = 8
_QUERY_PASSWORD = re.compile(r"([?&;\s](?:password|passwd|pwd)=)[^&;\s]+", re.IGNORECASE)


def _secret_pattern(secret: str) -> re.Pattern[str]:
    """A long secret anywhere; a short one not preceded or followed by a word character where it
    starts or ends with one."""
    if len(secret) >= LONG_SECRET:
        return re.compile(re.escape(secret))
    before = r"(?<!\w)" if re.match(r"\w", secret) else ""
    after = r"(?!\w)" if re.search(r"\w$", secret) else ""
    return re.compile(before + re.escape(secret) + after)


class Cipher:
    """Fernet encryption of connection URIs at rest."""

    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode() if isinstance(key, str) else key)
        except Exception:
            raise ConfigurationError(
                "TDSYNC_ENCRYPTION_KEY is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes; make one with "
                "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
            ) from None

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigurationError(
                "a stored connection URI cannot be decrypted: TDSYNC_ENCRYPTION_KEY is not the key "
                "it was encrypted with"
            ) from None


def load_cipher(settings: Settings) -> Cipher:
    """The key the settings name; in embedded mode one is generated into TDSYNC_HOME (0600)."""
    if settings.encryption_key:
        return Cipher(settings.encryption_key)
    if not settings.embedded:
        raise ConfigurationError(
            "TDSYNC_ENCRYPTION_KEY must be set when TDSYNC_MONGO_URI points at an external MongoDB"
        )
    return Cipher(_home_key(settings.home))


def _home_key(home: Path) -> str:
    path = home / KEY_FILE
    if not path.exists():
        private_dir(home)
        # Write the key in full under a private name, then link it into place: a process that
        # starts at the same moment sees either no key file or a complete one, never an empty one.
        tmp = home / f".{KEY_FILE}.{os.getpid()}.{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(Fernet.generate_key().decode())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        finally:
            tmp.unlink()
    return path.read_text().strip()
