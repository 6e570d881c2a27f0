"""Settings read from the environment (SPEC.md, "Configuration")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs


@dataclass(frozen=True)
class Settings:
    home: Path
    mongo_uri: str | None
    mongo_db: str
    encryption_key: str | None
    api_key: str | None
    dagster_home: Path
    source_timeout_s: float
    scan_lease_s: float
    # How long a refresh or scan waits for another run of its connection to finish.
    lease_wait_s: float = 300.0
    # How long a scan waits while its source answers nothing before it gives up.
    scan_stall_s: float = 30.0

    @property
    def embedded(self) -> bool:
        return self.mongo_uri is None

    def where(self) -> str:
        """Which home and store this process uses, in a line (no credentials): printed by every
        command, so a second catalogue started by mistake is seen at once."""
        if self.embedded:
            store = f"embedded, data in {self.home / 'mongo'}"
        else:
            # Keep only the hosts: the user, password and options stay out of any output.
            rest = self.mongo_uri.split("://", 1)[-1]
            hosts = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
            store = f"MongoDB at {hosts} (TDSYNC_MONGO_URI)"
        return f"home {self.home}; store {store}, database {self.mongo_db}"

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        home = Path(env.get("TDSYNC_HOME") or default_home()).absolute()
        source_timeout_s = float(env.get("TDSYNC_SOURCE_TIMEOUT_S") or 10)
        return cls(
            home=home,
            mongo_uri=env.get("TDSYNC_MONGO_URI") or None,
            mongo_db=env.get("TDSYNC_MONGO_DB") or "tdsync",
            encryption_key=env.get("TDSYNC_ENCRYPTION_KEY") or None,
            api_key=env.get("TDSYNC_API_KEY") or None,
            dagster_home=Path(env.get("DAGSTER_HOME") or home / "dagster").absolute(),
            source_timeout_s=source_timeout_s,
            scan_lease_s=float(env.get("TDSYNC_SCAN_LEASE_S") or 900),
            lease_wait_s=float(env.get("TDSYNC_LEASE_WAIT_S") or 300),
            # Past the source's own bounds (statement timeout, then the client's cut-off at
            # twice it), so only a source that answers nothing at all stops a scan.
            scan_stall_s=float(env.get("TDSYNC_SCAN_STALL_S") or 3 * source_timeout_s),
        )


def default_home() -> Path:
    """One catalogue per user, wherever a command runs from (not the current directory, where a
    command run elsewhere would silently start a second, empty catalogue)."""
    return Path(platformdirs.user_data_dir("tdsync", appauthor=False))


def private_dir(path: Path) -> Path:
    """`path`, created if missing readable by this user only (0700): TDSYNC_HOME holds the key,
    the embedded store's data (sample rows) and Dagster's run records."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def ensure_dagster_home(settings: Settings) -> Path:
    """Point DAGSTER_HOME at the configured instance, creating it on first use."""
    if settings.home in settings.dagster_home.parents:
        private_dir(settings.home)
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    config = settings.dagster_home / "dagster.yaml"
    if not config.exists():
        from tdsync.deployment import instance_config_path  # TDSYNC_DEPLOYMENT picks the file

        config.write_text(instance_config_path().read_text())
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    return settings.dagster_home
