"""`edged dashboard` as a real process on a real Mosquitto: JSON API, /metrics, history across restarts, retention,
auth and its configuration errors. (The pages in a real browser: tests/test_dashboard_browser.py.)"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import tracemalloc
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from urllib.parse import quote

import pytest
from media import ROOT
from mosquitto import USERS, Mosquitto, Subscriber, free_port, make_pki, wait_until
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from test_publisher import STATS, track

from edged import __version__
from edged.dashboard.history import History
from edged.dashboard.service import Dashboard
from edged.faces import TrackEvent
from edged.fleet import EMOTION_BUCKETS, MAX_GAPS
from edged.payloads import Event, State, Stats, utc_iso
from edged.publisher import MqttPublisher
from edged.settings import DashboardSettings, MqttSettings, known_variables, load_settings

XSS = "<img src=x onerror=alert(1)>"
TOKEN = "t0ken-for-the-dashboard"


class DashboardProcess:
    """`python -m edged dashboard` on a free port, fed by the broker on `broker_port`; `env` adds EDGED_* variables."""

    def __init__(self, broker_port: int, workdir: Path, **env: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
        self.env = {**clean, "EDGED_MQTT__HOST": "127.0.0.1", "EDGED_MQTT__PORT": str(broker_port),
                    "EDGED_DASHBOARD__PORT": str(self.port), "EDGED_DASHBOARD__DATABASE": str(workdir / "history.sqlite3"),
                    "EDGED_DASHBOARD__PUSH_INTERVAL_S": "0.2", **env}
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None

    def start(self, subscribed: bool = True) -> DashboardProcess:
        """Start and wait until it answers (and, if `subscribed`, until it is subscribed to the broker)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.workdir / "dashboard.log", "a")  # noqa: SIM115  # closed in stop()
        self.process = subprocess.Popen([sys.executable, "-m", "edged", "dashboard"], env=self.env, cwd=ROOT,
                                        stdout=self.log, stderr=subprocess.STDOUT, text=True)

        def answers() -> bool:
            assert self.process.poll() is None, f"the dashboard exited: {self.output()}"
            try:
                return get(self.url + "/api/fleet", headers=self.auth_headers())[0] == 200
            except OSError:
                return False

        try:
            wait_until(answers, 20, "the dashboard to answer")
            if subscribed:
                wait_until(lambda: get_json(self.url + "/api/fleet", self.auth_headers())["broker"]["connected"], 10,
                           "the dashboard to subscribe")
        except BaseException:
            self.stop()  # a `with` does not call __exit__ when __enter__ fails
            raise
        return self

    def auth_headers(self) -> dict[str, str]:
        credentials = Path(self.env.get("CREDENTIALS_DIRECTORY", "/nonexistent"))

        def secret(name: str) -> str | None:  # the variable, else systemd's LoadCredential=dashboard_<name>:...
            file = credentials / f"dashboard_{name}"
            return self.env.get(f"EDGED_DASHBOARD__{name.upper()}") or (file.read_text().strip() if file.is_file() else None)

        token, user = secret("token"), self.env.get("EDGED_DASHBOARD__USERNAME")
        if user:
            pair = f"{user}:{secret('password')}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        return {"Authorization": f"Bearer {token}"} if token else {}

    def output(self) -> str:
        return (self.workdir / "dashboard.log").read_text()

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; returns the exit status."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        self.process = None
        self.log.close()
        return status

    def __enter__(self) -> DashboardProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, Message, bytes]:
    """(status, headers, body) of one request; an HTTP error status is returned, not raised."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def get_json(url: str, headers: dict[str, str] | None = None) -> dict:
    status, _, body = get(url, headers)
    assert status == 200, (status, body[:300])
    return json.loads(body)


def row(dashboard: DashboardProcess, device: str) -> dict:
    """The device's row in /api/fleet, {} while it is not there."""
    return get_json(dashboard.url + "/api/fleet", dashboard.auth_headers())["devices"].get(device, {})


def publisher(port: int, device: str) -> MqttPublisher:
    settings = MqttSettings(host="127.0.0.1", port=port, state_interval_s=0, reconnect_min_s=0.1, reconnect_max_s=0.5)
    pub = MqttPublisher(settings, device, None, model_id="emotions-test", version=__version__)
    pub.start()
    assert pub.wait_connected(5)
    return pub


@pytest.fixture
def dashboard(broker, tmp_path):
    with DashboardProcess(broker.port, tmp_path / "dashboard") as running:
        yield running


def test_the_api_shows_kiosks_their_health_and_history(broker, dashboard):
    pubs = [publisher(broker.port, name) for name in ("lobby-1", "lobby-2", XSS)]
    try:
        now = time.time()
        for i, pub in enumerate(pubs):
            pub.event(TrackEvent("face_appeared", track(emotion="happy"), now))
            pub.event(TrackEvent("emotion_changed", track(emotion="sad"), now, previous_emotion="happy"))
            pub.state([track()] * (i + 1), now)
            pub.stats(STATS)
        fleet = wait_until(lambda: (f := get_json(dashboard.url + "/api/fleet"))["fleet"]["devices"] == 3
                           and all(d["seq"]["events"]["last"] == 2 and d["fps"] for d in f["devices"].values()) and f,
                           10, "three kiosks with their events and stats")
        assert fleet["broker"]["connected"] is True
        assert {name: (d["health"], d["faces"], d["camera_ok"]) for name, d in fleet["devices"].items()} == {
            "lobby-1": ("online", 1, True), "lobby-2": ("online", 2, True), XSS: ("online", 3, True)}
        pubs[0].close()  # a clean stop: the broker shows it offline at once
        wait_until(lambda: row(dashboard, "lobby-1")["health"] == "offline", 10, "lobby-1 offline")
        fleet = get_json(dashboard.url + "/api/fleet")
        assert ("lobby-1", "offline") in {(a["device"], a["kind"]) for a in fleet["alerts"]}

        device = get_json(dashboard.url + "/api/devices/" + quote(XSS))
        assert device["device"] == XSS and [e["type"] for e in device["events"]] == ["emotion_changed", "face_appeared"]
        assert get(dashboard.url + "/api/devices/nobody")[0] == 404
        # Nor has it a history (not a day of nulls that looks like a kiosk that sent nothing); a known one has.
        status, _, body = get(dashboard.url + "/api/history?device=nobody")
        assert status == 404 and json.loads(body) == {"error": "no such device"}
        assert get(dashboard.url + "/api/history?device=" + quote(XSS))[0] == 200

        history = get_json(dashboard.url + "/api/history?range=hour&group=lobby-")
        assert len(history["t"]) == 60 and history["bucket_s"] == 60
        assert [sum(n or 0 for n in history["emotions"][e]) for e in ("happy", "sad")] == [2, 2]  # lobby-1 and -2
        # The minutes before the kiosks existed have no sample: null, not zero events (the chart shows a gap).
        assert all(history["emotions"][e][:-2] == [None] * 58 for e in history["emotions"]), history["emotions"]
        heard = -2 if history["faces"][-2] is not None else -1
        assert history["emotions"]["angry"][heard] == 0  # heard from, no angry face: zero
        assert get(dashboard.url + "/api/history?range=year")[0] == 400
        assert get(dashboard.url + "/favicon.ico")[0] == 204  # no icon, and no 404 in a browser's console
    finally:
        for pub in pubs:
            pub.close()


def test_metrics_parse_and_carry_the_device_label(broker, dashboard):
    pub = publisher(broker.port, XSS)
    raw = Subscriber(broker.port, "unused")  # the stats of a kiosk whose camera is lost, with events spooled
    try:
        raw.publish(f"edged/{XSS}/stats", _stats(XSS, 1, camera_ok=False, outbox_depth=7).to_json())
        pub.state([track(), track(id_=2)], time.time())
        wait_until(lambda: get_json(dashboard.url + "/api/fleet")["devices"].get(XSS, {}).get("faces") == 2, 10,
                   "the kiosk's state")
        status, headers, body = get(dashboard.url + "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        samples = {(s.name, s.labels.get("device"), s.labels.get("kind")): s.value
                   for family in text_string_to_metric_families(body.decode()) for s in family.samples}
        assert samples[("edged_device_up", XSS, None)] == 1
        assert samples[("edged_device_faces", XSS, None)] == 2
        assert samples[("edged_device_camera_ok", XSS, None)] == 0
        assert samples[("edged_device_outbox_depth", XSS, None)] == 7
        assert samples[("edged_device_alerts", XSS, "camera")] == 1
        assert samples[("edged_device_events_resets_total", XSS, None)] == 0
        assert samples[("edged_dashboard_broker_connected", None, None)] == 1
        assert samples[("edged_dashboard_messages_total", None, None)] >= 3

        def live_pages() -> float:
            families = text_string_to_metric_families(get(dashboard.url + "/metrics")[2].decode())
            return next(f.samples[0].value for f in families if f.name == "edged_dashboard_live_pages")

        assert live_pages() == 0
        with urllib.request.urlopen(dashboard.url + "/api/live", timeout=10) as stream:
            first = json.loads(next(line for line in stream if line.startswith(b"data: "))[6:])
            assert first["full"] and XSS in first["devices"]
            assert live_pages() == 1
        wait_until(lambda: live_pages() == 0, 10, "the closed stream to be forgotten")
    finally:
        pub.close()
        raw.close()


def test_history_survives_a_restart_and_sigterm_exits_0(broker, tmp_path):
    workdir = tmp_path / "dashboard"
    first = DashboardProcess(broker.port, workdir)
    pub = publisher(broker.port, "kiosk-r")
    try:
        first.start()
        for i in range(5):
            pub.event(TrackEvent("face_appeared", track(id_=i, emotion="surprise"), time.time()))
        pub.state([track()], time.time())  # retained: the broker sends it again to the restarted dashboard
        wait_until(lambda: row(first, "kiosk-r").get("seq", {}).get("events", {}).get("last") == 5, 10, "five events")
        wait_until(lambda: row(first, "kiosk-r").get("faces") == 1, 10, "the state")
    finally:
        pub.close()
        status = first.stop()
    assert status == 0, first.output()
    samples = _samples(workdir / "history.sqlite3", "kiosk-r")
    assert samples[0] >= 1, samples
    # Events are not retained: after the restart they can only come from the database.
    with DashboardProcess(broker.port, workdir) as second:
        history = get_json(second.url + "/api/history?range=day&device=kiosk-r")
        assert history["bucket_s"] == 900 and sum(n or 0 for n in history["emotions"]["surprise"]) == 5
        # The device itself comes back from its retained status and state, once the broker has sent them.
        wait_until(lambda: get(second.url + "/api/devices/kiosk-r")[0] == 200, 10, "kiosk-r from retained messages")
        assert get_json(second.url + "/api/devices/kiosk-r")["row"]["seq"]["events"]["last"] is None
    # The retained state updated the restarted view but is not a new sample: the history counts it once.
    assert _samples(workdir / "history.sqlite3", "kiosk-r") == samples


def test_kiosks_a_restarted_broker_forgot_are_still_listed_as_unseen_and_retired_ones_are_not(broker, tmp_path):
    workdir = tmp_path / "dashboard"
    pub, retired = publisher(broker.port, "kiosk-gone"), publisher(broker.port, "kiosk-retired")
    with DashboardProcess(broker.port, workdir) as first:
        pub.stats(STATS)
        retired.stats(STATS)
        wait_until(lambda: row(first, "kiosk-gone").get("last_seen_utc") and row(first, "kiosk-retired").get("fps"),
                   10, "the kiosks' stats")
        pub.close()  # a clean stop: its last state and stats, then offline, retained
        retired.close()
        wait_until(lambda: row(first, "kiosk-gone")["health"] == "offline", 10, "the kiosk offline")
        seen = row(first, "kiosk-gone")["last_seen_utc"]
        # Retiring a kiosk (docs/fleet.md): clear its retained messages. The dashboard forgets it at once.
        operator = Subscriber(broker.port, "unused")
        for topic in ("status", "state", "stats"):
            operator.publish(f"edged/kiosk-retired/{topic}", b"", retain=True)
        operator.close()
        wait_until(lambda: "kiosk-retired" not in get_json(first.url + "/api/fleet")["devices"], 10,
                   "the retired kiosk gone")
    broker.stop()
    broker.start()  # no persistence: the retained status and stats are gone
    with DashboardProcess(broker.port, workdir) as second:
        time.sleep(1)  # what the broker still has (nothing) has arrived
        fleet = get_json(second.url + "/api/fleet")
        gone = fleet["devices"]["kiosk-gone"]
        assert (gone["health"], gone["remembered"], gone["last_seen_utc"]) == ("unknown", "offline", seen)
        assert (gone["fps"], gone["faces"], gone["camera_ok"]) == (None, None, None)  # nothing current to tell
        assert "kiosk-retired" not in fleet["devices"]  # retired: not remembered either
        [alert] = [a for a in fleet["alerts"] if a["device"] == "kiosk-gone"]
        assert alert["kind"] == "unseen" and "last offline, last seen" in alert["detail"]
        assert get(second.url + "/api/devices/kiosk-gone")[0] == 200
        assert get(second.url + "/api/history?device=kiosk-gone")[0] == 200  # remembered: its history is there
        back = publisher(broker.port, "kiosk-gone")  # it comes back: known again, no alert
        try:
            wait_until(lambda: row(second, "kiosk-gone")["health"] == "online", 10, "the kiosk back online")
            assert row(second, "kiosk-gone")["remembered"] is None and not row(second, "kiosk-gone")["alerts"]
        finally:
            back.close()


def _samples(database: Path, device: str) -> tuple[int, int]:
    """(state samples, stats samples) of `device` in a dashboard's history file."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        faces, stats = db.execute("SELECT SUM(faces_n), SUM(stats_n) FROM minutes WHERE device = ?", (device,)).fetchone()
    return int(faces or 0), int(stats or 0)


def _event(device: str, seq: int, ts: float, emotion: str = "happy") -> Event:
    return Event(device=device, ts=utc_iso(ts), seq=seq, type="face_appeared", track=seq, emotion=emotion,
                 confidence=0.9, scores={emotion: 0.9}, box=(1, 2, 3, 4))


def _stats(device: str, seq: int, **fields: object) -> Stats:
    return Stats.model_validate({**STATS, "device": device, "ts": utc_iso(time.time()), "seq": seq, "version": "x",
                                 "model_id": "m", "cpu_temp_c": None, **fields})


def test_history_buckets_prunes_after_the_retention_and_distrusts_device_clocks(tmp_path):
    now = 1_800_000_030.0  # 30 s into a minute
    history = History(tmp_path / "h.sqlite3", retention_s=3600)
    history.record(_event("a", 1, now - 7200), now)  # older than the retention: counted now
    history.record(_event("a", 2, now + 86_400), now)  # from the future: counted now
    history.record(_event("a", 3, now - 120, "sad"), now)  # a replayed event: its own minute
    history.record(_event("b", 1, now, "angry"), now)
    history.record(State(device="a", ts=utc_iso(now), seq=1, faces=[]), now)
    history.record(_stats("a", 1, camera_ok=False), now)
    history.record(State(device="a", ts=utc_iso(now - 240), seq=2, faces=[]), now - 240)  # heard, no event
    series = history.series(now, 3600, 60, device="a")
    assert series["t"][-1] == 1_800_000_000 and len(series["t"]) == 60
    assert series["emotions"]["happy"][-1] == 2 and series["emotions"]["sad"][-3] == 1
    assert series["faces"][-1] == 0 and series["fps"][-1] == STATS["fps"] and series["camera_ok"][-1] == 0
    assert series["faces"][-2] is None  # no sample is not zero faces...
    assert all(series["emotions"][e][-2] is None for e in series["emotions"])  # ...nor zero events
    assert series["emotions"]["happy"][-3] == 0  # an event of another emotion: a sample, so zero happy
    assert series["emotions"]["happy"][-5] == 0 and series["faces"][-5] == 0  # a state alone: zero events
    assert series["emotions"]["happy"][:-5] == [None] * 55
    fleet = history.series(now, 3600, 60)["emotions"]["angry"]  # the fleet: group ""
    assert fleet[-1] == 1 and fleet[-2] is None and fleet[-3] == 0
    history.close(now)

    reopened = History(tmp_path / "h.sqlite3", retention_s=60)  # a shorter retention after a restart
    assert reopened.rows() == 4
    reopened.flush(now)
    assert reopened.rows() == 2  # the replayed event's and the lone state's minutes are gone; the current ones remain
    reopened.flush(now + 3600)
    assert reopened.rows() == 0
    reopened.close(now)


def test_memory_stays_bounded_however_long_the_traffic_goes_on():
    # Everything the dashboard keeps in memory is bounded by the number of devices times a fixed window (the seqs
    # remembered per topic, the missing seq ranges, the emotion window, the changed devices, the history's deltas):
    # once the windows have filled, more minutes of traffic, with gaps, redeliveries and late arrivals, add nothing.
    dashboard = Dashboard(DashboardSettings(window_s=60), MqttSettings(), None, History(":memory:", 86_400))
    face = {"track": 1, "emotion": "happy", "confidence": 0.9, "scores": {"happy": 0.9}, "box": [0, 0, 9, 9]}
    stats = {**STATS, "version": "x", "model_id": "m", "cpu_temp_c": None}
    devices, seqs, start = ("a", "b", "c"), dict.fromkeys(range(9), 0), 1_800_000_000.0
    clock = start

    def send(device: str, kind: str, seq: int, at: float, body: dict) -> None:
        payload = json.dumps({"v": 1, "device": device, "ts": utc_iso(at), "seq": seq, **body}).encode()
        dashboard.feed.fold(f"edged/{device}/{kind}", payload, clock)

    def traffic(minutes: float) -> None:  # per device: 2 events/s, 2 states/s, stats every 10 s
        nonlocal clock
        for _ in range(int(minutes * 120)):
            clock += 0.5
            tick = round((clock - start) * 2)
            for n, device in enumerate(devices):
                seq = seqs[n] = seqs[n] + (4 if seqs[n] % 10 == 9 else 1)  # 3 lost every 10 events...
                send(device, "events", seq, clock, {"type": "face_appeared", **face})
                if seq % 10 == 3:
                    send(device, "events", seq - 2, clock - 1, {"type": "face_appeared", **face})  # ...one arrives late
                if seq % 7 == 0:
                    send(device, "events", seq, clock, {"type": "face_appeared", **face})  # a redelivery
                seqs[n + 3] += 1
                send(device, "state", seqs[n + 3], clock, {"faces": [face]})
                if tick % 20 == n:
                    seqs[n + 6] += 1
                    send(device, "stats", seqs[n + 6], clock, stats)
            dashboard.update(clock)
            if tick % 10 == 0:
                dashboard.history.flush(clock)

    # pydantic-core's JSON parser caches the strings it reads (payload `ts` values too) in a table of fixed size,
    # 16 384 entries (about 1.2 MB), each new string taking a random one: filled (traced) first, so that it is not
    # what is measured.
    gc.collect()
    tracemalloc.start()
    try:
        for n in range(100_000):
            State.model_validate_json(json.dumps({"v": 1, "device": "a", "ts": utc_iso(n), "seq": 1, "faces": []}))
        traffic(5)  # the 60 s emotion window, the 512 seqs per topic and the 64 missing ranges fill
        gc.collect()
        filled = tracemalloc.get_traced_memory()[0]
        traffic(10)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - filled
    finally:
        tracemalloc.stop()
    view = dashboard.view
    assert view.rejected == 0 and dashboard.feed.failed is None
    events = view.devices["a"].seq["events"]
    assert events.duplicates > 200 and events.late > 200 and events.lost == 2 * events.late and events.resets == 0
    assert all(len(d.emotions) <= EMOTION_BUCKETS + 1 for d in view.devices.values())
    assert all(len(s._missing) <= MAX_GAPS for d in view.devices.values() for s in d.seq.values())
    assert grown < 16_000, f"{grown} bytes more after 10 more minutes"
    dashboard.history.close(clock)


def test_a_token_or_a_user_is_required_and_nothing_can_be_changed(broker, tmp_path):
    with DashboardProcess(broker.port, tmp_path / "token", EDGED_DASHBOARD__TOKEN=TOKEN,
                          EDGED_DASHBOARD__COOKIE_DAYS="2") as dash:
        assert get(dash.url + "/api/fleet")[0] == 401
        assert get(dash.url + "/", {"Authorization": "Bearer wrong-token-wrong-token"})[0] == 401
        assert get(dash.url + "/metrics", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        # A browser opens /?token=... once: the token moves into a cookie and out of the address bar.
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(dash.url + f"/kiosk/x?token={TOKEN}&range=day")
        assert redirect.value.code == 303 and redirect.value.headers["Location"] == "/kiosk/x?range=day"
        cookie, *flags = [part.strip() for part in redirect.value.headers["Set-Cookie"].split(";")]
        assert {"HttpOnly", "SameSite=strict", "Path=/"} <= set(flags) and "Secure" not in flags  # plain http here
        # A lasting cookie (a session cookie is gone when the wall screen's browser restarts), renewed by each visit.
        assert "Max-Age=172800" in flags
        assert TOKEN not in cookie and cookie.startswith("edged_dashboard_token=")  # an HMAC of it, not the token
        status, headers, _ = get(dash.url + "/api/fleet", {"Cookie": cookie})
        assert status == 200 and headers["Set-Cookie"].split("; ")[0] == cookie
        assert "Max-Age=172800" in headers["Set-Cookie"].split("; ")
        assert "Set-Cookie" not in get(dash.url + "/api/fleet", {"Authorization": f"Bearer {TOKEN}"})[1]
        assert get(dash.url + "/api/fleet", {"Cookie": "edged_dashboard_token=nope"})[0] == 401
        assert get(dash.url + "/api/fleet", {"Cookie": f"edged_dashboard_token={TOKEN}"})[0] == 401  # the raw token
        assert get(dash.url + "/api/fleet", {"Authorization": f"Bearer {cookie.partition('=')[2]}"})[0] == 401
        # Behind a TLS-terminating proxy that says so, the cookie is Secure.
        for proxy in ({"X-Forwarded-Proto": "https"}, {"Forwarded": "for=192.0.2.7;proto=https"}):
            with pytest.raises(urllib.error.HTTPError) as redirect:
                opener.open(urllib.request.Request(dash.url + f"/?token={TOKEN}", headers=proxy))
            flags = [part.strip() for part in redirect.value.headers["Set-Cookie"].split(";")]
            assert "Secure" in flags and flags[0] == cookie, proxy
        assert get(dash.url + "/api/fleet", {"Authorization": f"Bearer {TOKEN}"}, method="POST")[0] == 405
        # Refused, a browser gets a page saying how to log in (nothing from the request in it), a program plain text.
        status, headers, body = get(dash.url + "/kiosk/%3Cscript%3Ex%3C%2Fscript%3E?token=<b>wrong</b>",
                                    {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        page = body.decode()
        assert status == 401 and headers["Content-Type"].startswith("text/html")
        assert "open /?token=&lt;the token&gt; once" in page and "Authorization: Bearer &lt;the token&gt;" in page
        assert "<script>" not in page and "<b>" not in page and "wrong" not in page and "docs/" not in page
        # A link with a token that is not the token says so first (without the token it carried), then how to log in.
        assert "the token in the link (?token=) was refused" in page
        near_miss = TOKEN[:-1] + "X"
        html_accept = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
        for path in (f"/?token={near_miss}", f"/kiosk/x?range=day&token={near_miss}", "/?token="):
            status, headers, body = get(dash.url + path, html_accept)
            page = body.decode()
            assert status == 401 and headers["Content-Type"].startswith("text/html"), path
            assert '<p id="refused"><strong>the token in the link (?token=) was refused' in page, path
            assert near_miss not in page and TOKEN not in page and "open /?token=&lt;the token&gt; once" in page, path
        status, headers, body = get(dash.url + f"/api/fleet?token={near_miss}")
        assert status == 401 and body.decode().startswith("unauthorised: the token in the link (?token=) was refused")
        assert near_miss not in body.decode()
        # Without a token in the link, nothing was refused: the plain page and text.
        assert "refused" not in get(dash.url + "/", html_accept)[2].decode()
        status, headers, body = get(dash.url + "/api/fleet")
        assert status == 401 and headers["Content-Type"].startswith("text/plain")
        assert body.decode() == ("unauthorised: log in with a browser: open /?token=<the token> once "
                                 "(EDGED_DASHBOARD__TOKEN); a cookie keeps you logged in; or a program (Prometheus, "
                                 "curl): the header Authorization: Bearer <the token>\n")
        # The right token in the link still wins over nothing else given, and a cookie over a stale link.
        assert get(dash.url + f"/api/fleet?token={near_miss}", {"Cookie": cookie})[0] == 200

    user = {"EDGED_DASHBOARD__USERNAME": "ops", "EDGED_DASHBOARD__PASSWORD": "long-password"}
    with DashboardProcess(broker.port, tmp_path / "basic", EDGED_DASHBOARD__HOST="0.0.0.0", **user) as dash:
        def basic(user: str, password: str) -> dict[str, str]:
            return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

        status, headers, body = get(dash.url + "/")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert "EDGED_DASHBOARD__USERNAME and EDGED_DASHBOARD__PASSWORD" in body.decode() and "token" not in body.decode()
        assert get(dash.url + "/", basic("ops", "wrong-password"))[0] == 401
        assert get(dash.url + "/", basic("ops", "long-password"))[0] == 200
        assert get(dash.url + "/", {"Authorization": "Basic !!!"})[0] == 401


def test_broker_link_changes_are_logged_once_each_with_the_reason(broker, tmp_path):
    fast = {"EDGED_MQTT__RECONNECT_MIN_S": "0.1", "EDGED_MQTT__RECONNECT_MAX_S": "0.2"}  # a dozen retries a second
    with DashboardProcess(broker.port, tmp_path / "dashboard", **fast) as dash:
        broker.stop()
        wait_until(lambda: not get_json(dash.url + "/api/fleet")["broker"]["connected"], 10, "the link to drop")
        time.sleep(2)  # retries, each refused
        broker.start()
        wait_until(lambda: get_json(dash.url + "/api/fleet")["broker"]["connected"], 10, "the link to come back")
    lines = [line.split(": ", 1)[1] for line in dash.output().splitlines() if " edged.watch: " in line]
    where = f"127.0.0.1:{broker.port}"
    assert lines[0] == f"connected to MQTT broker {where}; subscribed to edged/+/#"
    assert re.fullmatch(rf"lost the MQTT connection to {where} \(.+\); reconnecting", lines[1]), lines
    # While it is away: why, once (not once per retry).
    assert lines[2:-1] == [f"cannot reach MQTT broker {where}: Connection refused; retrying"], lines
    assert re.fullmatch(rf"MQTT connection to {where} is back after \d+ s; subscribed to edged/\+/# again", lines[-1])


def test_the_token_and_password_may_come_from_credential_files_like_the_broker_password(broker, tmp_path):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "dashboard_token").write_text(TOKEN + "\n")
    with DashboardProcess(broker.port, tmp_path / "token", EDGED_DASHBOARD__HOST="0.0.0.0",
                          CREDENTIALS_DIRECTORY=str(credentials)) as dash:
        assert get(dash.url + "/api/fleet")[0] == 401
        assert get(dash.url + "/api/fleet", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    (credentials / "dashboard_token").unlink()
    (credentials / "dashboard_password").write_text("from-the-file\n")
    with DashboardProcess(broker.port, tmp_path / "basic", EDGED_DASHBOARD__USERNAME="ops",
                          EDGED_DASHBOARD__PASSWORD="", CREDENTIALS_DIRECTORY=str(credentials)) as dash:
        basic = base64.b64encode(b"ops:from-the-file").decode()
        assert get(dash.url + "/api/fleet")[0] == 401
        assert get(dash.url + "/api/fleet", {"Authorization": f"Basic {basic}"})[0] == 200


def test_the_broker_credentials_are_the_daemons_and_a_refusal_is_shown(auth_broker, tmp_path):
    user = {"EDGED_MQTT__USERNAME": "watcher", "EDGED_MQTT_PASSWORD": USERS["watcher"]}
    with DashboardProcess(auth_broker.port, tmp_path / "good", **user) as dash:
        assert get_json(dash.url + "/api/fleet")["broker"]["connected"] is True
    wrong = {"EDGED_MQTT__USERNAME": "watcher", "EDGED_MQTT_PASSWORD": "not-the-password"}
    dash = DashboardProcess(auth_broker.port, tmp_path / "bad", **wrong)
    try:
        dash.start(subscribed=False)
        broker = wait_until(lambda: (b := get_json(dash.url + "/api/fleet")["broker"])["detail"].startswith("MQTT broker")
                            and b, 10, "the refusal")
        assert broker["connected"] is False and "not-the-password" not in json.dumps(broker)
    finally:
        dash.stop()


def test_the_dashboard_reads_a_tls_only_broker_with_a_user_and_password(tmp_path):
    pki = make_pki(tmp_path / "pki")
    with Mosquitto(tmp_path / "broker", users=USERS, tls=(pki.server_cert, pki.server_key)).start() as broker:
        tls = {"EDGED_MQTT__TLS": "true", "EDGED_MQTT__CA_FILE": str(pki.ca), "EDGED_MQTT__USERNAME": "watcher",
               "EDGED_MQTT_PASSWORD": USERS["watcher"]}
        kiosk = MqttPublisher(MqttSettings(host="127.0.0.1", port=broker.port, tls=True, ca_file=pki.ca,
                                           username="edged", state_interval_s=0),
                              "kiosk-tls", SecretStr(USERS["edged"]), model_id="m", version=__version__)
        kiosk.start()
        try:
            assert kiosk.wait_connected(10), kiosk.last_error
            kiosk.stats(STATS)
            with DashboardProcess(broker.port, tmp_path / "good", **tls) as dash:
                wait_until(lambda: row(dash, "kiosk-tls").get("fps") == STATS["fps"], 10, "the kiosk over TLS")
                assert row(dash, "kiosk-tls")["health"] == "online"
            assert f"connected to MQTT broker 127.0.0.1:{broker.port}" in dash.output()
        finally:
            kiosk.close()
        # The wrong CA, and the right CA with the wrong password: each refusal on the page and in the log, once.
        for name, wrong, said in [
            ("ca", {"EDGED_MQTT__CA_FILE": str(pki.other_ca)}, "certificate verify failed"),
            ("password", {"EDGED_MQTT_PASSWORD": "not-the-password"}, "check EDGED_MQTT__USERNAME and EDGED_MQTT_PASSWORD"),
        ]:
            dash = DashboardProcess(broker.port, tmp_path / name, EDGED_MQTT__RECONNECT_MIN_S="0.1",
                                    EDGED_MQTT__RECONNECT_MAX_S="0.2", **{**tls, **wrong})
            try:
                dash.start(subscribed=False)
                link = wait_until(lambda d=dash, s=said: s in (b := get_json(d.url + "/api/fleet")["broker"])["detail"]
                                  and b, 10, f"the refusal ({name})")
                assert link["connected"] is False
                time.sleep(1)  # several retries
            finally:
                dash.stop()
            said_lines = [line for line in dash.output().splitlines() if said in line]
            assert len(said_lines) == 1 and "ERROR edged.watch" in said_lines[0], dash.output()
            assert "not-the-password" not in dash.output()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _dashboard_cli(env: dict[str, str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    return subprocess.run([sys.executable, "-m", "edged", "dashboard"], env={**clean, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("env", "message"), [
    ({"EDGED_DASHBOARD__HOST": "0.0.0.0"}, "EDGED_DASHBOARD__HOST=0.0.0.0 listens beyond this machine: set "
     "EDGED_DASHBOARD__TOKEN, or EDGED_DASHBOARD__USERNAME and EDGED_DASHBOARD__PASSWORD, or listen on 127.0.0.1"),
    ({"EDGED_DASHBOARD__HOST": "192.0.2.1", "EDGED_DASHBOARD__USERNAME": "ops"},
     "EDGED_DASHBOARD__USERNAME and EDGED_DASHBOARD__PASSWORD must be set together"),
    ({"EDGED_DASHBOARD__TOKEN": "short"}, "EDGED_DASHBOARD__TOKEN: too short: must be at least 16 characters"),
    ({"EDGED_DASHBOARD__USERNAME": "ops", "EDGED_DASHBOARD__PASSWORD": "short"},
     "EDGED_DASHBOARD__PASSWORD: too short: must be at least 8 characters"),
    ({"EDGED_DASHBOARD__TOKEN": "a short and spaced token"},  # never matches a header, a query and a cookie alike
     "EDGED_DASHBOARD__TOKEN: must be printable ASCII without spaces (e.g. `openssl rand -hex 24`)"),
    ({"EDGED_DASHBOARD__USERNAME": "ops:team", "EDGED_DASHBOARD__PASSWORD": "long-password"},
     "EDGED_DASHBOARD__USERNAME: must not contain ':' (HTTP basic auth sends user:password)"),
    ({"EDGED_DASHBOARD__PORT": "http"}, "EDGED_DASHBOARD__PORT: Input should be a valid integer, got 'http'"),
    ({"EDGED_DASHBOARD__RETENTION": "7"},  # a typo
     "EDGED_DASHBOARD__RETENTION: unknown variable (did you mean EDGED_DASHBOARD__RETENTION_DAYS?)"),
    ({"EDGED_DASHBOARD__DATABASE": "{file}/history.sqlite3"},
     "EDGED_DASHBOARD__DATABASE={file}/history.sqlite3: {file} is a file, not a directory"),
    ({"EDGED_DASHBOARD__DATABASE": "{file}/sub/history.sqlite3"},
     "EDGED_DASHBOARD__DATABASE={file}/sub/history.sqlite3: {file} is a file, not a directory"),
    ({"EDGED_DASHBOARD__DATABASE": "{dir}"}, "EDGED_DASHBOARD__DATABASE={dir}: is a directory, not a file"),
    ({"EDGED_DASHBOARD__DATABASE": "{file}"},
     "EDGED_DASHBOARD__DATABASE={file}: {file} is not a dashboard history (not an SQLite database): name another "
     "file"),
    ({"EDGED_STATE_DIR": "{file}"}, "EDGED_STATE_DIR={file} (the dashboard history goes there as dashboard.sqlite3 "
     "while EDGED_DASHBOARD__DATABASE is empty): {file} is a file, not a directory"),
    ({"CREDENTIALS_DIRECTORY": "{dir}", "EDGED_DASHBOARD__USERNAME": "ops"},  # dashboard_password holds "short"
     "EDGED_DASHBOARD__PASSWORD (from $CREDENTIALS_DIRECTORY/dashboard_password): too short: must be at least 8 "
     "characters"),
])
def test_configuration_errors_are_one_line_naming_the_variable_and_exit_78(env, message, tmp_path):
    (tmp_path / "a-file").write_text("a text file, not a database: " + "x" * 100)
    (tmp_path / "dashboard_password").write_text("short\n")
    places = {"file": str(tmp_path / "a-file"), "dir": str(tmp_path)}
    env = {name: value.format(**places) for name, value in env.items()}
    result = _dashboard_cli({"EDGED_MQTT__PORT": "1", **env})
    assert result.returncode == 78, result.stderr
    assert result.stderr == f"edged: configuration error: {message.format(**places)}\n"
    assert "short" not in result.stderr.replace("too short", "")  # secrets are never echoed
    # a refused start leaves nothing behind (once it left `<file>.lock` beside any file named, /etc/passwd included)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "dashboard_password"]


def test_a_browser_stays_logged_in_for_30_days_unless_configured():
    assert load_settings({}).dashboard.cookie_days == 30  # as docs/dashboard.md says
    with pytest.raises(Exception, match="EDGED_DASHBOARD__COOKIE_DAYS"):
        load_settings({"EDGED_DASHBOARD__COOKIE_DAYS": "401"})  # browsers cap a cookie at 400 days


def test_listening_beyond_loopback_needs_auth_in_the_settings():
    with pytest.raises(Exception, match=r"EDGED_DASHBOARD__HOST=0\.0\.0\.0 listens beyond this machine"):
        load_settings({"EDGED_DASHBOARD__HOST": "0.0.0.0"})
    assert load_settings({"EDGED_DASHBOARD__HOST": "::1"}).dashboard.loopback
    assert not load_settings({"EDGED_DASHBOARD__HOST": "dash.lan", "EDGED_DASHBOARD__TOKEN": TOKEN}).dashboard.loopback


def test_a_port_in_use_exits_69_naming_it(broker, tmp_path):
    with DashboardProcess(broker.port, tmp_path / "first") as first:
        result = _dashboard_cli({"EDGED_DASHBOARD__PORT": str(first.port), "EDGED_STATE_DIR": str(tmp_path)})
    assert result.returncode == 69, result.stderr
    assert f"cannot listen on 127.0.0.1:{first.port}" in result.stderr and "EDGED_DASHBOARD__PORT" in result.stderr


def test_a_second_dashboard_on_the_same_history_exits_69_naming_the_file_and_the_first(broker, tmp_path):
    # Minutes are added to, never overwritten: two dashboards on one file would count every message twice.
    with DashboardProcess(broker.port, tmp_path / "first") as first:
        database = first.env["EDGED_DASHBOARD__DATABASE"]
        result = _dashboard_cli({"EDGED_MQTT__PORT": str(broker.port), "EDGED_DASHBOARD__PORT": str(free_port()),
                                 "EDGED_DASHBOARD__DATABASE": database})
        assert result.returncode == 69, result.stderr
        assert result.stderr == (f"edged: another edged dashboard (pid {first.process.pid}) is using the history "
                                 f"{database} (EDGED_DASHBOARD__DATABASE={database}): stop it, or give this one its "
                                 "own EDGED_DASHBOARD__DATABASE\n")
        # The default file in EDGED_STATE_DIR is guarded the same way, naming that variable.
        state = {"EDGED_MQTT__PORT": str(broker.port), "EDGED_STATE_DIR": str(tmp_path / "state")}
        with DashboardProcess(broker.port, tmp_path / "default", EDGED_DASHBOARD__DATABASE="", **state) as other:
            result = _dashboard_cli({**state, "EDGED_DASHBOARD__PORT": str(free_port())})
            assert result.returncode == 69, result.stderr
            assert f"another edged dashboard (pid {other.process.pid}) is using the history " \
                   f"{tmp_path / 'state' / 'dashboard.sqlite3'} (EDGED_STATE_DIR=" in result.stderr
        assert get(first.url + "/api/fleet")[0] == 200  # the first one goes on
    # Stopped, it lets the next one in.
    with DashboardProcess(broker.port, tmp_path / "first") as again:
        assert get(again.url + "/api/fleet")[0] == 200


def test_help_says_how_to_log_in_and_a_missing_extra_says_how_to_install_it():
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    result = subprocess.run([sys.executable, "-m", "edged", "dashboard", "--help"], env=clean, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    for essential in ("/?token=<token> once", "Authorization: Bearer <token>", "EDGED_DASHBOARD__USERNAME",
                      "HTTP basic auth", "127.0.0.1:8080"):
        assert essential in text, essential
    # Without the extra (uvicorn hidden from the import system): both ways of installing it, exit 78.
    code = "import sys; sys.modules['uvicorn'] = None; from edged.cli import main; sys.exit(main(['dashboard']))"
    result = subprocess.run([sys.executable, "-c", code], env=clean, cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 78, result.stderr
    assert result.stderr == ("edged: configuration error: the dashboard needs uvicorn, which is not installed: install "
                             "the dashboard extra: pip install 'edged[dashboard]' (in a clone: pip install "
                             "'.[dashboard]')\n")


def test_a_host_that_does_not_resolve_exits_69_naming_the_variable(tmp_path):
    # 69, not 78: a name that does not resolve at boot may once DNS is up, and systemd restarts on 69.
    result = _dashboard_cli({"EDGED_MQTT__PORT": "1", "EDGED_DASHBOARD__HOST": "no-such-host.invalid",
                             "EDGED_DASHBOARD__TOKEN": TOKEN, "EDGED_STATE_DIR": str(tmp_path)})
    assert result.returncode == 69, result.stderr
    assert re.fullmatch(r"edged: EDGED_DASHBOARD__HOST=no-such-host\.invalid does not resolve \(.+\): cannot listen "
                        r"on it; give an address, or a name that resolves here\n", result.stderr), result.stderr


def test_the_kiosk_daemon_never_imports_the_dashboard():
    code = ("import sys, edged.cli, edged.pipeline, edged.publisher, edged.watch; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'prometheus_client') "
            "or m.startswith('edged.dashboard')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_docs_list_every_dashboard_variable_and_metric():
    docs = (ROOT / "docs" / "dashboard.md").read_text()
    for name in known_variables():
        if name.startswith("EDGED_DASHBOARD__"):
            assert f"`{name}`" in docs, name
    from edged.dashboard import metrics

    for name in re.findall(r"edged_(?:device|dashboard)_\w+", metrics.__doc__):
        assert name in docs, name


def _doc_row(docs: str, endpoint: str) -> str:
    found = re.search(rf"^\| `GET {re.escape(endpoint)}(?:\\\||[^|])*\| (.+) \|$", docs, re.M)  # \| is in a cell
    assert found, f"docs/dashboard.md lost its row for {endpoint}"
    return found.group(1)


def test_docs_list_every_api_key_metric_and_alert_kind(broker, dashboard):
    """docs/dashboard.md's JSON API table names every key the endpoints return, its metrics section every metric
    the dashboard serves and every alert kind the fleet model raises (checked against a real dashboard)."""
    docs = (ROOT / "docs" / "dashboard.md").read_text()
    pub = publisher(broker.port, "lobby-docs")
    try:
        pub.event(TrackEvent("face_appeared", track(emotion="happy"), time.time()))
        pub.state([track()], time.time())
        pub.stats(STATS)
        wait_until(lambda: row(dashboard, "lobby-docs").get("seq", {}).get("events", {}).get("last") == 1
                   and row(dashboard, "lobby-docs").get("fps"), 10, "the kiosk")
        fleet = get_json(dashboard.url + "/api/fleet")
        device = get_json(dashboard.url + "/api/devices/lobby-docs")
        history = get_json(dashboard.url + "/api/history?device=lobby-docs")
        with urllib.request.urlopen(dashboard.url + "/api/live", timeout=10) as stream:
            lines = (line for line in stream if line.startswith(b"data: "))
            next(lines)  # the whole fleet, as /api/fleet
            live = json.loads(next(lines)[6:])
        metrics = {f.name for f in text_string_to_metric_families(get(dashboard.url + "/metrics")[2].decode())}
    finally:
        pub.close()
    documented = {endpoint: set(re.findall(r'"(\w+)"', _doc_row(docs, endpoint)))
                  for endpoint in ("/api/fleet", "/api/devices/", "/api/history", "/api/live")}
    assert set(fleet) | set(fleet["broker"]) | set(fleet["fleet"]) | set(fleet["alerts"][0] if fleet["alerts"] else {}) \
        <= documented["/api/fleet"], documented["/api/fleet"]
    row_words = set(re.findall(r"`(\w+)`", _doc_row(docs, "/api/fleet")))
    device_row = fleet["devices"]["lobby-docs"]
    assert set(device_row) | set(device_row["seq"]["events"]) <= row_words | documented["/api/fleet"], row_words
    assert set(device) <= documented["/api/devices/"]
    assert set(history) <= documented["/api/history"]
    assert set(live) | set(live["fleet"]) <= documented["/api/live"] | documented["/api/fleet"]
    # Metrics: prometheus_client drops the _total of a counter's family name; the docs give the sample name.
    for family in metrics:
        assert re.search(rf"`{family}(_total)?`", docs), family
    section = docs[docs.index("## Prometheus metrics"):docs.index("## Configuration")]
    kinds = set(re.findall(r'Alert\([^,]+, "(\w+)"', (ROOT / "edged" / "fleet.py").read_text()))
    assert "no_devices" in kinds and all(f"`{kind}`" in section for kind in kinds), kinds
