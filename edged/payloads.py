"""The MQTT payload contract, version 1: what edged publishes on events, state and stats (docs/mqtt.md).

Every payload is a JSON object with the envelope `v`, `device`, `ts` and `seq`. A change that could break a
subscriber (a field removed, renamed or retyped) raises `v`; new optional fields do not.
`python -m edged.payloads [DIR]` writes the JSON Schemas (default: docs/schema).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edged.faces import EventType, Track, TrackEvent

VERSION = 1
STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"
TOPICS = ("status", "events", "state", "stats")
# The emotion labels of the contract (the 7 FER2013 classes); scores are published in this order.
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schema"

Probability = Annotated[float, Field(ge=0, le=1)]
BoxField = Annotated[
    tuple[int, int, int, int], Field(description="[x, y, w, h] in pixels of the captured frame, origin top left")
]
Scores = Annotated[dict[str, Probability], Field(description="Smoothed probability (0-1) per emotion label")]


def _v_required(schema: dict[str, Any]) -> None:
    # `v` has a default for our own constructors, but every message carries it: a reader may rely on it.
    schema["required"] = ["v", *schema.get("required", [])]


def utc_iso(ts_utc: float) -> str:
    """UTC epoch seconds as ISO 8601 with milliseconds and a Z: 2024-05-01T12:00:00.250Z."""
    return datetime.fromtimestamp(ts_utc, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Envelope(BaseModel):
    """Fields every payload carries."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_v_required)

    v: Literal[1] = Field(VERSION, description="Payload contract version; raised only on a breaking change")
    device: str = Field(description="Device id, as in the topic")
    ts: str = Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$",
        json_schema_extra={"format": "date-time"},
        description="When it happened, UTC ISO 8601 ending in Z",
    )
    seq: int = Field(
        ge=1,
        description="Counter per device and topic, kept across restarts. events: +1 per event, so a gap means events "
        "were lost and a repeat is a redelivery; state and stats: always increasing, may jump ahead after a restart",
    )

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


class Face(BaseModel):
    """One tracked face in a state message."""

    model_config = ConfigDict(extra="forbid")

    track: int = Field(ge=0, description="Track id, stable while the face stays in view")
    emotion: str = Field(description="Smoothed emotion label")
    confidence: Probability = Field(description="Smoothed probability of `emotion`")
    scores: Scores
    box: BoxField

    @classmethod
    def from_track(cls, track: Track) -> Face:
        return cls(
            track=track.id,
            emotion=track.emotion,
            confidence=_prob(track.confidence),
            scores=_scores(track.scores),
            box=_box(track.box),
        )


class Event(Envelope):
    """Topic `<prefix>/<device>/events` (QoS 1, not retained): a face appeared, changed emotion or left."""

    type: EventType = Field(description="face_appeared, emotion_changed or face_left")
    track: int = Field(ge=0, description="Track id, stable while the face stays in view")
    emotion: str = Field(description="Smoothed emotion label at the time of the event")
    confidence: Probability = Field(description="Smoothed probability of `emotion`")
    scores: Scores
    box: BoxField
    previous_emotion: str | None = Field(None, description="emotion_changed only: the emotion before")
    dwell_s: float | None = Field(None, ge=0, description="face_left only: seconds the face was in view")
    recovered: bool | None = Field(
        None, description="face_left only, present and true when the last run ended without saying goodbye (a crash, "
        "SIGKILL, power cut) and this start sends it: `ts` is when the face was last seen. Added within version 1"
    )

    @model_validator(mode="after")
    def _fields_of_type(self) -> Event:
        if (self.type == "emotion_changed") != (self.previous_emotion is not None):
            raise ValueError("previous_emotion is present exactly on emotion_changed")
        if (self.type == "face_left") != (self.dwell_s is not None):
            raise ValueError("dwell_s is present exactly on face_left")
        if self.recovered is not None and self.type != "face_left":
            raise ValueError("recovered is present only on face_left")
        return self

    @classmethod
    def from_track_event(cls, event: TrackEvent, device: str, seq: int) -> Event:
        track = event.track
        return cls(
            device=device,
            ts=utc_iso(event.ts_utc),
            seq=seq,
            type=event.type,
            track=track.id,
            emotion=track.emotion,
            confidence=_prob(track.confidence),
            scores=_scores(track.scores),
            box=_box(track.box),
            previous_emotion=event.previous_emotion if event.type == "emotion_changed" else None,
            dwell_s=round(track.dwell_s, 3) if event.type == "face_left" else None,
            recovered=True if event.type == "face_left" and event.extra.get("recovered") else None,
        )


class State(Envelope):
    """Topic `<prefix>/<device>/state` (retained, throttled): the faces in view now; empty when nobody is."""

    faces: list[Face] = Field(description="Faces in view, by track id")
    dominant_emotion: str | None = Field(
        None,
        description="The emotion with the largest summed confidence over the faces in view; absent when there are "
        "none. An additive field (v stays 1); filled in from `faces` when a payload lacks it",
    )

    @model_validator(mode="after")
    def _fill_dominant(self) -> State:
        if self.dominant_emotion is None:
            self.dominant_emotion = dominant_emotion(self.faces)
        return self


def dominant_emotion(faces: list[Face]) -> str | None:
    """The emotion with the largest summed confidence over `faces` (ties: alphabetical), None when empty."""
    totals: dict[str, float] = {}
    for face in faces:
        totals[face.emotion] = totals.get(face.emotion, 0.0) + face.confidence
    return min(totals, key=lambda label: (-totals[label], label)) if totals else None


class Percentiles(BaseModel):
    """Latency of one stage over the recent frames, in milliseconds."""

    model_config = ConfigDict(extra="forbid")

    p50: float = Field(ge=0, description="Median, milliseconds")
    p95: float = Field(ge=0, description="95th percentile, milliseconds")


class Latency(BaseModel):
    """Per-stage latency of the pipeline."""

    model_config = ConfigDict(extra="forbid")

    decode: Percentiles = Field(
        description="Reading and converting a frame from the source; for a live camera this includes waiting for "
        "the next frame (about 1/fps), so it is not CPU time"
    )
    detect: Percentiles = Field(description="Haar face detection on one frame")
    classify: Percentiles = Field(description="Emotion classification of the faces of one frame")
    track: Percentiles = Field(description="Tracking and smoothing for one frame")
    publish: Percentiles = Field(description="Handing one frame's messages to the MQTT client")


class Stats(Envelope):
    """Topic `<prefix>/<device>/stats` (retained, every EDGED_MQTT__STATS_INTERVAL_S): how the daemon is doing."""

    fps: float = Field(ge=0, description="Frames processed per second, recently")
    latency_ms: Latency
    frames: int = Field(ge=0, description="Frames processed since start")
    frames_dropped: int = Field(ge=0, description="Frames dropped since start because processing lagged capture")
    faces_seen: int = Field(ge=0, description="Tracks confirmed since start")
    queue_depth: int = Field(ge=0, description="Frames waiting between capture and processing")
    uptime_s: float = Field(ge=0, description="Seconds since the daemon started")
    version: str = Field(description="edged version")
    model_id: str = Field(description="Identifier of the emotion model in use")
    cpu_temp_c: float | None = Field(description="CPU temperature in °C, null where the board has no sensor")
    # Added within v1 (optional for readers of older releases): the camera and the outbox.
    camera_ok: bool = Field(True, description="False while the camera is lost and being reopened")
    camera_reconnects: int = Field(0, ge=0, description="Times the camera was lost and reopened since start")
    outbox_depth: int = Field(0, ge=0, description="Events spooled on disk, not yet acknowledged by the broker")
    outbox_dropped_full: int = Field(
        0, ge=0, description="Events dropped since start because the outbox was full (oldest first): a seq gap"
    )
    outbox_dropped_expired: int = Field(
        0, ge=0, description="Events dropped since start because they waited longer than EDGED_OUTBOX__MAX_AGE_S"
    )
    outbox_write_errors: int = Field(
        0, ge=0, description="Events lost since start because the outbox could not be written (disk full)"
    )
    outbox_rejected: int = Field(
        0, ge=0, description="Events the broker refused since start (an MQTT 5 PUBACK with an error reason code, "
        "e.g. not authorised): not retried, a seq gap"
    )
    # Added within v1 after edged 0.2.0: the broker link.
    mqtt_disconnects: int = Field(0, ge=0, description="Established MQTT connections lost since start")
    mqtt_takeovers: int = Field(
        0, ge=0, description="Connections lost since start because another client connected with this device's client "
        "id (MQTT 5: reason Session taken over; MQTT 3.1.1: repeated drops soon after connecting): two devices share "
        "an id"
    )
    mqtt_too_large: int = Field(
        0, ge=0, description="Messages not sent since start because they are larger than the broker accepts (its "
        "maximum packet size, advertised or learned from dropped connections); events among them are also counted in "
        "outbox_rejected"
    )

    def to_json(self) -> str:
        return self.model_dump_json()  # cpu_temp_c stays, as null: the key is always there


def _prob(value: float) -> float:
    # Smoothed int8 scores can drift a hair outside [0, 1] in float arithmetic.
    return round(min(1.0, max(0.0, float(value))), 4)


def _scores(scores: dict[str, float]) -> dict[str, float]:
    return {label: _prob(p) for label, p in scores.items()}


def _box(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in box)
    return x, y, w, h


SCHEMAS: dict[str, type[Envelope]] = {"event": Event, "state": State, "stats": Stats}


def export_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema (draft 2020-12) of each payload, keyed event, state, stats."""
    out = {}
    for name, model in SCHEMAS.items():
        schema = model.model_json_schema(mode="serialization")
        out[name] = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"{name}.schema.json", **schema}
    return out


def schema_text(schema: dict[str, Any]) -> str:
    """The committed form of a schema file."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write `<name>.schema.json` for each payload into `directory`; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in export_schemas().items():
        path = directory / f"{name}.schema.json"
        path.write_text(schema_text(schema), encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_schemas(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR):
        print(written)
