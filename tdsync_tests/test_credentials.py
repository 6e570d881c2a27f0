"""Connection URIs: encryption at rest, masking, dialect detection, scrubbing, key handling."""

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tdsync.config.credentials import Cipher, dialect_of, load_cipher, mask_uri, scrub
from tdsync.config.settings import Settings
from tdsync.domain.errors import ConfigurationError, InvalidDatabaseConnection


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("postgresql://user:secret@host:5432/db", "postgresql://user:*****@host:5432/db"),
        (
            "postgresql+psycopg2://user:p%40ss%2Fw0rd@host/db",
            "postgresql+psycopg2://user:*****@host/db",
        ),
        (
            "mysql+pymysql://root:pw@127.0.0.1:3306/shop",
            "mysql+pymysql://root:*****@127.0.0.1:3306/shop",
        ),
        (
            "postgresql://user@host/db?password=hunter2&sslmode=require",
            "postgresql://user@host/db?password=*****&sslmode=require",
        ),
        ("mysql://root@localhost/x", "mysql://root@localhost/x"),
        ("sqlite:////tmp/shop.db", "sqlite:////tmp/shop.db"),
        ("not a uri at all", "*****"),
    ],
)
def test_mask_uri_shows_stars_instead_of_the_password(uri: str, masked: str) -> None:
    assert mask_uri(uri) == masked


@pytest.mark.parametrize(
    ("uri", "dialect"),
    [
        ("postgresql://u:p@h/db", "postgresql"),
        ("postgresql+psycopg2://u:p@h/db", "postgresql"),
        ("mysql+pymysql://u:p@h/db", "mysql"),
        ("mariadb+pymysql://u:p@h/db", "mariadb"),
        ("sqlite:///shop.db", "sqlite"),
        ("duckdb:///shop.duckdb", "duckdb"),
    ],
)
def test_dialect_is_detected_from_the_uri(uri: str, dialect: str) -> None:
    assert dialect_of(uri) == dialect


def test_unsupported_or_malformed_uri_is_an_invalid_connection_without_the_password() -> None:
    with pytest.raises(InvalidDatabaseConnection) as unsupported:
        dialect_of("oracle://scott:tiger99@host/orcl")
    with pytest.raises(InvalidDatabaseConnection) as malformed:
        dialect_of("://scott:tiger99@")
    for err in (unsupported.value, malformed.value):
        assert err.error_code == "invalid_database_connection"
        assert "tiger99" not in str(err.as_dict())


def test_scrub_removes_every_spelling_of_the_password() -> None:
    uri = "postgresql://app:p%40ss%2Fw0rd@db.internal:5432/shop"
    text = f"could not connect to {uri}: password 'p@ss/w0rd' rejected (p%40ss%2Fw0rd)"
    cleaned = scrub(text, uri)
    assert "p@ss/w0rd" not in cleaned
    assert "p%40ss%2Fw0rd" not in cleaned
    assert "*****" in cleaned
    # URLs of connections the caller did not name are scrubbed too.
    assert scrub("at mysql://other:topsecret@h/db", uri) == "at mysql://other:*****@h/db"


def test_cipher_round_trips_and_never_stores_plaintext() -> None:
    cipher = Cipher(Fernet.generate_key().decode())
    uri = "postgresql://app:hunter2@db/shop"
    token = cipher.encrypt(uri)
    assert "hunter2" not in token
    assert cipher.decrypt(token) == uri


def test_wrong_key_is_a_clear_configuration_error_without_plaintext() -> None:
    token = Cipher(Fernet.generate_key().decode()).encrypt("postgresql://app:hunter2@db/shop")
    with pytest.raises(ConfigurationError, match="TDSYNC_ENCRYPTION_KEY") as err:
        Cipher(Fernet.generate_key().decode()).decrypt(token)
    assert "hunter2" not in str(err.value.as_dict())


def test_malformed_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not a valid Fernet key"):
        Cipher("not-a-key")


def _settings(home: Path, *, mongo_uri: str | None, key: str | None) -> Settings:
    return Settings(
        home=home,
        mongo_uri=mongo_uri,
        mongo_db="tdsync",
        encryption_key=key,
        api_key=None,
        dagster_home=home / "dagster",
        source_timeout_s=10,
        scan_lease_s=900,
    )


def test_external_mongo_without_a_key_is_a_configuration_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path, mongo_uri="mongodb://db.example:27017", key=None)
    with pytest.raises(ConfigurationError, match="TDSYNC_ENCRYPTION_KEY must be set"):
        load_cipher(settings)
    assert not (tmp_path / "encryption.key").exists()


def test_embedded_mode_generates_one_complete_private_key_even_when_processes_race(
    tmp_path: Path,
) -> None:
    # Several processes may start at once: each must end up with the same, complete key.
    with ThreadPoolExecutor(8) as pool:
        for attempt in range(60):
            home = tmp_path / f"home{attempt}"
            home.mkdir()
            settings = _settings(home, mongo_uri=None, key=None)
            ciphers = list(pool.map(lambda _, s=settings: load_cipher(s), range(8)))
            token = ciphers[0].encrypt("sqlite:///x.db")
            assert all(c.decrypt(token) == "sqlite:///x.db" for c in ciphers)
            assert stat.S_IMODE(os.stat(home / "encryption.key").st_mode) == 0o600
            assert os.listdir(home) == ["encryption.key"]


def test_a_short_password_is_scrubbed_as_a_token_never_leaving_holes_in_words() -> None:
    uri = "postgresql://app:o@db.internal:5432/shop"
    text = "connection to server failed for o: password 'o' rejected, dsn user=app password=o"
    cleaned = scrub(text, uri)
    assert cleaned == (
        "connection to server failed for *****: password '*****' rejected, "
        "dsn user=app password=*****"
    )
    assert "c*****nnecti*****n" not in scrub("connection", uri)


def test_a_short_password_inside_a_uri_is_scrubbed_in_its_userinfo_and_query() -> None:
    uri = "postgresql://app:o@db/shop"
    text = "at postgresql://app:o@db/shop and mysql://me@h/x?user=me&password=o&ssl=1"
    assert scrub(text, uri) == "at ***** and mysql://me@h/x?user=me&password=*****&ssl=1"
    assert scrub("at postgresql://app:o@other/shop", uri) == "at postgresql://app:*****@other/shop"


@pytest.mark.parametrize(
    ("uri", "option"),
    [
        ("postgresql://u@h/db?passfile=/root/.pgpass", "passfile"),
        ("postgresql://u@h/db?host=/tmp", "host"),
        ("postgresql://u@h/db?options=-c%20default_transaction_read_only%3Doff", "options"),
        ("mysql://u@h/db?unix_socket=/run/mysqld/mysqld.sock", "unix_socket"),
        ("duckdb:///x.duckdb?enable_external_access=true", "enable_external_access"),
        ("sqlite:///x.db?mode=rwc", "mode"),
    ],
)
def test_an_option_off_the_dialects_allow_list_is_refused_by_name(uri: str, option: str) -> None:
    with pytest.raises(InvalidDatabaseConnection) as err:
        dialect_of(uri)
    assert err.value.detail == {"refused_options": [option]}


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://u@h/db?sslmode=require&application_name=tdsync&connect_timeout=5"
        "&target_session_attrs=read-write",
        "postgresql://u@h/db?options=-c%20search_path%3Dsales%20-c%20statement_timeout%3D0",
        "postgresql://u@h/db?options=--search_path%3Dsales",
        "postgresql://u@h/db?host=replica1,replica2&password=pw",
        "mysql+pymysql://u@h/db?charset=utf8mb4&ssl_verify_cert=true&ssl_verify_identity=true",
    ],
)
def test_options_people_use_are_allowed(uri: str) -> None:
    assert dialect_of(uri) in ("postgresql", "mysql")
