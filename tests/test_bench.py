"""`edged bench`: the real pipeline on the sample clip, its figures, the serialising publisher, the CLI."""

from __future__ import annotations

import json

import pytest
from media import ROOT, SAMPLE_CLIP, require_model
from mosquitto import Subscriber

from edged.bench import SerialisingPublisher, bench_settings, render, run_bench
from edged.cli import main
from edged.faces import Track, TrackEvent
from edged.payloads import Event, State, Stats
from edged.pipeline import STAGES

CLIP_30FPS = ROOT / "samples" / "faces-30fps.mp4"  # the same story at 30 fps, twice as fast: 6 s


def _environ(model) -> dict[str, str]:
    return {"EDGED_MODEL__PATH": str(model)}


def test_bench_runs_the_whole_clip_and_reports_every_figure():
    model = require_model()
    published: list[SerialisingPublisher] = []

    def make(model_id: str) -> SerialisingPublisher:
        published.append(SerialisingPublisher(model_id))
        return published[-1]

    result = run_bench(bench_settings(SAMPLE_CLIP, 1, realtime=False, environ=_environ(model)), make)
    assert result["frames"] == 180 and result["frames_dropped"] == 0
    assert result["frames_with_faces"] == 120 == result["faces"]  # 8 s of one face out of 12 s
    assert result["tracks"] == 2 and result["clip_fps"] == 15.0
    assert set(result["stages_ms"]) == set(STAGES)
    for stage, p in result["stages_ms"].items():
        assert 0 < p["p50"] <= p["p95"], stage
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert 0 < result["classify_per_face_ms"]["p50"] <= result["stages_ms"]["classify"]["p95"]
    assert result["fps"] > 0 and result["cpu_ms_per_frame"] > 0 and result["peak_rss_mb"] > 20
    assert result["full_scans"] < 30 and result["region_scans"] > 100  # the tracker-guided shortcut at work
    # every event and every frame's state went through the payload models
    publisher = published[0]
    assert publisher.seq["events"] == len(publisher.events) >= 4  # two faces: appeared (changed), left
    assert publisher.seq["state"] == 181  # one per frame, and the last one at the end of the clip
    assert publisher.seq["stats"] >= 1 and publisher.bytes > 180 * 50
    assert "capture to publish" in render(result)


def test_realtime_bench_paces_the_clip_at_its_own_rate_and_accounts_for_every_frame():
    # Whether it keeps up (0 dropped, p95 latency) is a benchmark figure (bench/perf.py), not a timed assertion.
    result = run_bench(bench_settings(CLIP_30FPS, 1, realtime=True, environ=_environ(require_model())))
    assert result["realtime"] and result["clip_fps"] == 30.0
    # Paced like a camera, full scans run beside the loop: on a loaded machine their faces join a few frames later
    # than in line (120 frames have a face), so this only checks that detection works.
    assert result["frames"] + result["frames_dropped"] == 180 and result["frames_with_faces"] > 60
    assert 5.5 < result["wall_s"] < 12  # a 6 s clip at its own pace


def test_serialising_publisher_builds_valid_payloads():
    publisher = SerialisingPublisher("model-x")
    publisher.start()
    track = Track(1, (10, 20, 30, 30), {"happy": 0.8, "sad": 0.2}, "happy", 100.0, 101.0)
    publisher.event(TrackEvent("face_left", track, 101.0, extra={"dwell_s": 1.0}))
    publisher.state([track], 101.0)
    stats = {"fps": 1.0, "latency_ms": {s: {"p50": 0.0, "p95": 0.0} for s in STAGES}, "frames": 1,
             "frames_dropped": 0, "faces_seen": 1, "queue_depth": 0, "uptime_s": 1.0}
    publisher.stats(stats)
    assert publisher.seq == {"events": 1, "state": 1, "stats": 1} and publisher.connected
    assert Event.model_validate_json(publisher.last["events"]).dwell_s == 1.0
    assert State.model_validate_json(publisher.last["state"]).faces[0].emotion == "happy"
    assert Stats.model_validate_json(publisher.last["stats"]).model_id == "model-x"
    with pytest.raises(ValueError):  # the same validation as the MQTT publisher's payloads
        publisher.stats({**stats, "frames": -1})


def test_cli_bench_json_and_bad_arguments(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGED_MODEL__PATH", str(require_model()))
    assert main(["bench", str(SAMPLE_CLIP), "--json", "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"frames", "frames_with_faces", "fps"} <= set(result) and result["frames"] == 180
    assert main(["bench", str(tmp_path / "missing.mp4")]) == 2
    assert "missing.mp4: no such file" in capsys.readouterr().err
    for bad in ("nonsense", "mqtt://broker:1883", "bad host:1883"):  # the host rules of EDGED_MQTT__HOST
        assert main(["bench", str(SAMPLE_CLIP), "--broker", bad]) == 2
    monkeypatch.setenv("EDGED_DETECTOR__FULL_SCAN_EVERY", "0")
    assert main(["bench", str(SAMPLE_CLIP)]) == 78
    assert "EDGED_DETECTOR__FULL_SCAN_EVERY" in capsys.readouterr().err


def test_cli_bench_publishes_to_a_real_broker(broker, capsys, monkeypatch):
    monkeypatch.setenv("EDGED_MODEL__PATH", str(require_model()))
    monkeypatch.setenv("EDGED_DEVICE_ID", "bench-kiosk")
    events = Subscriber(broker.port, "edged/bench-kiosk/events")
    try:
        assert main(["bench", str(SAMPLE_CLIP), "--json", "--broker", f"127.0.0.1:{broker.port}"]) == 0
        assert json.loads(capsys.readouterr().out)["tracks"] == 2
        messages = events.wait_count("edged/bench-kiosk/events", 4)  # two faces appeared and left
        assert [json.loads(m.text)["type"] for m in messages].count("face_appeared") == 2
    finally:
        events.close()
