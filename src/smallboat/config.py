"""One settings object for the whole package, read from SMALLBOAT_* environment variables.

Nothing here touches the disk at import time: `Settings()` only computes paths, and
`Settings.ensure_home()` creates the folders when a command actually needs them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where smallboat keeps its state and how hard it may push the machine."""

    model_config = SettingsConfigDict(env_prefix="SMALLBOAT_", extra="ignore")

    home: Path = Field(
        default=Path(".smallboat"),
        description="Folder holding all state: landing files, warehouse, runs, registry, logs.",
    )
    threads: int = Field(default=2, description="Threads DuckDB and PyTorch may use.")
    memory_limit: str = Field(default="3GB", description="DuckDB memory limit for large jobs.")
    dbt_target: str = Field(default="duckdb", description="profiles.yml target used by transform.")

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def landing_dir(self) -> Path:
        return self.home_dir / "landing"

    @property
    def rejects_dir(self) -> Path:
        return self.home_dir / "rejects"

    @property
    def warehouse_path(self) -> Path:
        return self.home_dir / "warehouse.duckdb"

    @property
    def quality_dir(self) -> Path:
        """dbt test results of each transform run, kept for cards and audits."""
        return self.home_dir / "quality"

    @property
    def dbt_target_dir(self) -> Path:
        return self.home_dir / "dbt"

    def table_landing_dir(self, table: str) -> Path:
        return self.landing_dir / table

    def ensure_home(self) -> Path:
        for folder in (self.home_dir, self.landing_dir, self.rejects_dir, self.quality_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self.home_dir
