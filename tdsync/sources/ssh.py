"""Sources layer: SSH tunnels to sources (the Dataherald engine's `use_ssh` and `ssh_settings`).

A tunnel lives as long as the one engine that uses it: opened for a registration's check, a
refresh's listing or a scan, closed with it. Only the settings' own credentials are used: no
SSH agent, no `~/.ssh` keys or config of tdsync's host.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paramiko
import sshtunnel
from sqlalchemy.engine import make_url

from tdsync.config.credentials import scrub
from tdsync.domain.errors import InvalidDatabaseConnection

DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}


@contextmanager
def tunnel(connection_uri: str, ssh: dict[str, Any], *, timeout_s: float) -> Iterator[str]:
    """The URI to connect to while the tunnel through `ssh` to the URI's host is open."""
    url = make_url(connection_uri)
    if url.get_backend_name() not in DEFAULT_PORTS:
        raise InvalidDatabaseConnection(
            f"an SSH tunnel reaches a database server; {url.get_backend_name()} is a file"
        )
    secrets = [s for s in (ssh.get("password"), ssh.get("private_key_password")) if s]
    try:
        forwarder = sshtunnel.SSHTunnelForwarder(
            (ssh["host"], int(ssh.get("port") or 22)),
            ssh_username=ssh["username"],
            ssh_password=ssh.get("password"),
            ssh_pkey=_private_key(ssh),
            ssh_config_file=None,
            allow_agent=False,
            host_pkey_directories=[],
            remote_bind_address=(url.host, url.port or DEFAULT_PORTS[url.get_backend_name()]),
            local_bind_address=("127.0.0.1", 0),
            logger=_QUIET,
            mute_exceptions=True,
        )
        # sshtunnel's own timeouts: connecting and the SSH handshake never hang a request.
        sshtunnel.SSH_TIMEOUT = timeout_s
        forwarder.start()
        local_port = forwarder.local_bind_port  # raises when the session was refused
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        for secret in secrets:
            text = text.replace(secret, "*****")
        raise InvalidDatabaseConnection(
            "the SSH tunnel to the source cannot be opened",
            {"reason": scrub(text, connection_uri)[:300]},
        ) from None
    try:
        local = url.set(host="127.0.0.1", port=local_port)
        yield local.render_as_string(hide_password=False)
    finally:
        forwarder.stop(force=True)


def _private_key(ssh: dict[str, Any]) -> paramiko.PKey | None:
    text = ssh.get("private_key")
    if not text:
        return None
    passphrase = ssh.get("private_key_password") or None
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.SSHException:
            continue
    raise InvalidDatabaseConnection(
        "ssh_settings.private_key is not a private key tdsync can read (OpenSSH or PEM: "
        "Ed25519, ECDSA or RSA), or its private_key_password is wrong"
    )


# sshtunnel logs the settings it was given at DEBUG; nothing of it reaches tdsync's logs.
_QUIET = logging.getLogger("tdsync.sources.ssh.sshtunnel")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
_QUIET.setLevel(logging.CRITICAL)
