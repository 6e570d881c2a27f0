"""Config layer: Settings read from the environment (SPEC.md, "Configuration"), in this one typed place.

Only the entry points read the environment, once each: the CLI's `main`, the detached scan
process's `main` (tdsync.defs.scan_process), `python -m tdsync.api.server`, and the Dagster resources
(tdsync.defs.resources) when a run starts. They pass the `Settings` down; every library function
that needs settings takes them as a required argument, so none reads the environment behind its
caller's back.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    """One catalogue per user, wherever a command runs from (not the current directory, where a
    command run elsewhere would silently start a second, empty catalogue)."""
    return Path(platformdirs.user_data_dir("tdsync", appauthor=False))


class Settings(BaseSettings):
    """Every setting of tdsync, typed, read from the environment here and nowhere else: the
    variable of each field is its name in capitals with the TDSYNC_ prefix (DAGSTER_HOME for
    `dagster_home`). An empty variable counts as unset; fields given as arguments win."""

    model_config = SettingsConfigDict(env_prefix="TDSYNC_", env_ignore_empty=True, extra="ignore")

    home: Path = Field(default_factory=default_home)
    mongo_uri: str | None = None
    mongo_db: str = "tdsync"
    encryption_key: str | None = None
    api_key: str | None = None
    # Unset: `home`/dagster.
    dagster_home: Path | None = Field(
        default=None, validation_alias=AliasChoices("dagster_home", "DAGSTER_HOME")
    )
    source_timeout_s: float = 10.0
    scan_lease_s: float = 900.0
    # How long a refresh or scan waits for another run of its connection to finish.
    lease_wait_s: float = 300.0
    # How long a scan waits while its source answers nothing before it gives up. Unset: past
    # the source's own bounds (statement timeout, then the client's cut-off at twice it), so
    # only a source that answers nothing at all stops a scan.
    scan_stall_s: float | None = None

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        self.home = self.home.absolute()
        self.dagster_home = (self.dagster_home or self.home / "dagster").absolute()
        if self.scan_stall_s is None:
            self.scan_stall_s = 3 * self.source_timeout_s
        return self

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
        """The settings as the environment says now: for entry points, once per process or
        command."""
        return cls()


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
        from tdsync.config.deployment import (
            instance_config_path,  # TDSYNC_DEPLOYMENT picks the file
        )

        config.write_text(instance_config_path().read_text())
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    return settings.dagster_home
