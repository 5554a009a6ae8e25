"""The [skills] settings: read from TOML and the environment, checked once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgevoice.config import SkillsConfig, load_config
from edgevoice.errors import ConfigError


def test_defaults() -> None:
    assert load_config(None, environ={}).skills == SkillsConfig()


def test_from_toml_and_environment(tmp_path: Path) -> None:
    toml = tmp_path / "edgevoice.toml"
    toml.write_text('[skills]\ntime_zone = "Asia/Tokyo"\nring_for_s = 30\ntimers_file = "state/timers.json"\n')
    skills = load_config(toml, environ={"EDGEVOICE_SKILLS_RING_EVERY_S": "5"}).skills
    assert skills.time_zone == "Asia/Tokyo"
    assert skills.ring_for_s == 30.0
    assert skills.ring_every_s == 5.0
    assert skills.timers_file == tmp_path / "state" / "timers.json"  # relative to the config file
    assert skills.shopping_list_file is None


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('time_zone = "Mars/Olympus_Mons"', "skills.time_zone 'Mars/Olympus_Mons' is not a known time zone"),
        ("ring_for_s = -1", "skills.ring_for_s must not be negative"),
        ("ring_every_s = 0", "skills.ring_every_s must be at least 1"),
        ("volume = 3", "unknown key(s) in [skills]: volume"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "edgevoice.toml"
    path.write_text(f"[skills]\n{toml}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path, environ={})
