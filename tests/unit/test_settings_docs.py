"""The settings tables in docs/adapter.md and docs/pipeline.md are the schema's, current."""

from __future__ import annotations

from pathlib import Path

from appliance.settings.reference import update

REPO = Path(__file__).resolve().parents[2]


def test_the_settings_tables_are_current() -> None:
    assert update(REPO, write=False) == [], "run: python -m appliance.settings.reference"
