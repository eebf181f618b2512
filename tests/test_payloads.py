"""The MQTT payload contract: committed schemas are current, and payloads keep their promises."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from edged.faces import Track, TrackEvent
from edged.payloads import SCHEMA_DIR, Event, Face, State, Stats, export_schemas, schema_text, utc_iso

SCORES = {"angry": 0.05, "disgust": 0.0, "fear": 0.05, "happy": 0.7, "sad": 0.05, "surprise": 0.05, "neutral": 0.1}


def _track(emotion: str = "happy") -> Track:
    return Track(id=3, box=(10, 20, 64, 64), scores=SCORES, emotion=emotion, first_seen_utc=1_700_000_000.0,
                 last_seen_utc=1_700_000_004.25)


@pytest.mark.parametrize("name", ["event", "state", "stats"])
def test_committed_schema_is_current(name):
    committed = (SCHEMA_DIR / f"{name}.schema.json").read_text()
    assert committed == schema_text(export_schemas()[name]), "regenerate with: python -m edged.payloads"


def test_schemas_require_the_envelope():
    for schema in export_schemas().values():
        assert {"v", "device", "ts", "seq"} <= set(schema["required"])
        assert schema["properties"]["v"]["const"] == 1


def test_utc_iso_ends_in_z():
    assert utc_iso(1_700_000_000.25) == "2023-11-14T22:13:20.250Z"


def test_event_fields_by_type():
    appeared = Event.from_track_event(TrackEvent("face_appeared", _track(), 1_700_000_000.0), "kiosk", 1)
    data = json.loads(appeared.to_json())
    assert data["v"] == 1 and data["seq"] == 1 and data["box"] == [10, 20, 64, 64]
    assert data["confidence"] == 0.7
    assert "previous_emotion" not in data and "dwell_s" not in data

    changed = Event.from_track_event(TrackEvent("emotion_changed", _track(), 1.0, previous_emotion="sad"), "kiosk", 2)
    assert json.loads(changed.to_json())["previous_emotion"] == "sad"

    left = json.loads(Event.from_track_event(TrackEvent("face_left", _track(), 2.0), "kiosk", 3).to_json())
    assert left["dwell_s"] == 4.25


def test_event_rejects_fields_of_another_type():
    base = {"device": "d", "ts": "2024-01-01T00:00:00Z", "seq": 1, "type": "face_appeared", "track": 1,
            "emotion": "happy", "confidence": 0.5, "scores": {"happy": 0.5}, "box": [0, 0, 1, 1]}
    Event.model_validate(base)
    with pytest.raises(ValidationError, match="dwell_s"):
        Event.model_validate({**base, "dwell_s": 1.0})
    with pytest.raises(ValidationError, match="previous_emotion"):
        Event.model_validate({**base, "type": "emotion_changed"})
    with pytest.raises(ValidationError):
        Event.model_validate({**base, "v": 2})
    with pytest.raises(ValidationError):
        Event.model_validate({**base, "ts": "2024-01-01 00:00:00"})


def test_state_round_trips():
    state = State(device="d", ts=utc_iso(0), seq=5, faces=[Face.from_track(_track())])
    assert State.model_validate_json(state.to_json()) == state


def test_examples_in_the_mqtt_doc_are_valid():
    doc = (SCHEMA_DIR.parent / "mqtt.md").read_text()
    examples = re.findall(r"<!-- example: (\w+) -->\n```json\n(.*?)```", doc, flags=re.S)
    assert [kind for kind, _ in examples] == ["event", "event", "event", "state", "stats"]
    models = {"event": Event, "state": State, "stats": Stats}
    for kind, text in examples:
        models[kind].model_validate_json(text)
    seqs = [json.loads(text)["seq"] for kind, text in examples if kind == "event"]
    assert seqs == [41, 42, 43]
