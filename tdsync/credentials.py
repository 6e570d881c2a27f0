"""Connection URIs: encryption at rest, masking for display, and scrubbing secrets out of text."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from urllib.parse import quote, quote_plus

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.engine import URL, make_url

from tdsync.config import Settings, private_dir
from tdsync.errors import ConfigurationError, InvalidDatabaseConnection

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
    refused = sorted(
        k for k in url.query if k.lower() in REFUSED_OPTIONS.get(url.get_backend_name(), ())
    )
    if refused:
        raise InvalidDatabaseConnection(
            f"connection option(s) not allowed: {', '.join(refused)} (tdsync only reads, and "
            "never lets a source run statements or read files on its own host)",
            {"refused_options": refused},
        )
    return url


# Driver options a URI could carry that would make the client run SQL at connect time
# (`init_command`) or read files of tdsync's host: `local_infile` lets the *server* ask for any
# file (LOAD DATA LOCAL), the others read option files.
_MYSQL_REFUSED = frozenset(
    {"init_command", "local_infile", "client_flag", "read_default_file", "read_default_group"}
)
REFUSED_OPTIONS = {"mysql": _MYSQL_REFUSED, "mariadb": _MYSQL_REFUSED}


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
    """Remove the passwords (and whole URIs) of the given connections from a message."""
    for uri in connection_uris:
        for secret in secrets_in(uri):
            text = text.replace(secret, MASK)
    # Belt and braces: any user:password@ left in a URL-looking string.
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", rf"\1{MASK}@", text)


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
    """The key from the environment; in embedded mode one is generated into TDSYNC_HOME (0600)."""
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
