"""The held-out NLU sets stay held out: the frozen test set is unchanged and never trained on.

The test set (``bot/rasa/heldout/test``) was written by two writers who never saw the training
data and frozen before any model was scored on it (see ``bot/EVALUATION.md``). These checks need no
Rasa: they read the YAML files.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import yaml

RASA = Path(__file__).resolve().parents[2] / "bot" / "rasa"
TEST_SET = RASA / "heldout" / "test"
ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")

# Long sentences that both a training file and the test set contain. Each was in the training data
# before the test set was written (nlu_colloquial.yml, 2026-11-22): the writers hit on the same words.
KNOWN_COINCIDENCES = {"孩子要上学了要办什么"}


def examples(path: Path) -> list[tuple[str, str]]:
    """(intent, text) for every example of an NLU file, entity annotations reduced to their text."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out = []
    for block in data.get("nlu") or []:
        if "intent" not in block:
            continue
        for line in block["examples"].splitlines():
            line = line.strip()
            if line.startswith("- "):
                out.append((block["intent"], ANNOTATION.sub(r"\1", line[2:]).strip()))
    return out


def training_texts() -> set[str]:
    return {text for path in (RASA / "data").rglob("*.yml") for _, text in examples(path)}


def test_frozen_test_set_is_unchanged() -> None:
    recorded = {}
    for line in (TEST_SET / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        recorded[name] = digest
    files = sorted(p.name for p in TEST_SET.glob("*.yml"))
    assert files == sorted(recorded), "a test-set file was added or removed"
    for name in files:
        assert hashlib.sha256((TEST_SET / name).read_bytes()).hexdigest() == recorded[name], (
            f"{name} changed after it was frozen"
        )


def test_test_set_covers_the_domain_with_enough_questions() -> None:
    intents = set(yaml.safe_load((RASA / "domain.yml").read_text(encoding="utf-8"))["intents"])
    questions = [e for path in sorted(TEST_SET.glob("*.yml")) for e in examples(path)]
    assert len(questions) >= 300
    asked = {intent for intent, _ in questions}
    assert asked <= intents, asked - intents
    assert len(asked) >= len(intents) - 2  # every intent a resident can express is asked about


def test_no_test_sentence_was_copied_into_training() -> None:
    trained = training_texts()
    overlap = {
        text
        for path in TEST_SET.glob("*.yml")
        for _, text in examples(path)
        if text in trained and len(text) >= 8
    }
    assert overlap <= KNOWN_COINCIDENCES, overlap - KNOWN_COINCIDENCES
