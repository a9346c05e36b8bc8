"""The Rasa project itself: its data validates and the test conversations pass (``rasa test core``)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.rasa, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2] / "bot" / "rasa"
ENV = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "SQLALCHEMY_SILENCE_UBER_WARNING": "1"}


def test_data_validates_without_warnings(rasa_venv: Path, rasa_model: Path) -> None:
    r = subprocess.run(
        [str(rasa_venv / "bin" / "rasa"), "data", "validate", "--fail-on-warnings",
         "--data", "data", "--domain", "domain.yml", "--config", "config.yml"],
        cwd=PROJECT, env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def test_every_test_conversation_passes(rasa_venv: Path, rasa_model: Path, tmp_path: Path) -> None:
    r = subprocess.run(
        [str(rasa_venv / "bin" / "rasa"), "test", "core", "--model", str(rasa_model),
         "--stories", "tests", "--out", str(tmp_path)],
        cwd=PROJECT, env=ENV, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    stories = len(re.findall(r"^- story:", (PROJECT / "tests" / "test_conversations.yml").read_text(), re.M))
    assert stories >= 30
    failed = tmp_path / "failed_test_stories.yml"
    assert not failed.exists() or "story:" not in failed.read_text(), failed.read_text()
    assert (tmp_path / "story_report.json").exists()
