"""The dashboard's pages in a real headless browser (Debian's chromium, driven by Selenium), fed by real `edged run`
kiosks on the sample clip and simulated ones, through a real Mosquitto: what only a browser can show.

Set EDGED_SCREENSHOTS=<dir> to keep the overview, kiosk and phone screenshots (docs/dashboard-*.png are made so:
EDGED_SCREENSHOTS=docs .venv/bin/python -m pytest tests/test_dashboard_browser.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from media import ROOT, SAMPLE_CLIP, require_model
from mosquitto import Subscriber, wait_until
from prometheus_client.parser import text_string_to_metric_families
from test_dashboard import XSS, DashboardProcess, get, get_json, publisher, row
from test_publisher import STATS, track

from edged.dashboard.history import History
from edged.faces import TrackEvent
from edged.fleet import duration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    """Headless chromium; skipped, saying why, only where it is not installed (scripts/setup.sh installs it as root)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(f"chromium or chromedriver is not installed ({CHROMIUM}, {CHROMEDRIVER}): "
                    "apt-get install chromium chromium-driver (scripts/setup.sh does it as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,860",
                     "--disable-gpu", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for failed requests
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def kiosk(port: int, device: str, workdir: Path) -> subprocess.Popen[str]:
    """A real `edged run` on the sample clip (12 s in real time), with a short keepalive so a killed one is soon
    shown offline by its last will."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
    env = {**clean, "EDGED_MODEL__PATH": str(require_model()), "EDGED_CAMERA__SOURCE": str(SAMPLE_CLIP),
           "EDGED_MQTT__HOST": "127.0.0.1", "EDGED_MQTT__PORT": str(port), "EDGED_DEVICE_ID": device,
           "EDGED_MQTT__KEEPALIVE": "5", "EDGED_MQTT__STATS_INTERVAL_S": "1", "EDGED_STATE_DIR": str(workdir / device)}
    return subprocess.Popen([sys.executable, "-m", "edged", "run"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def js(driver, script: str):
    return driver.execute_script(script)


def table(driver) -> dict[str, str]:
    """device -> status as the overview's table shows them."""
    rows = js(driver, "return [...document.querySelectorAll('#devices tbody tr')]"
                      ".map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])")
    return dict(rows)  # in the page's order


def charted(driver) -> int:
    """Events in the page's emotion chart; -1 before the chart is drawn."""
    return js(driver, "return window.edged.emotionEvents ?? -1")


def screenshot(driver, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("EDGED_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / f"dashboard-{name}.png"))


def test_kiosks_appear_go_offline_when_killed_and_the_chart_gains_points(broker, browser, tmp_path):
    sims = [publisher(broker.port, name) for name in ("lobby-sim-1", "lobby-sim-2")]
    kiosks: list[subprocess.Popen[str]] = []
    try:
        with DashboardProcess(broker.port, tmp_path / "dashboard") as dash:
            for i, pub in enumerate(sims):
                pub.event(TrackEvent("face_appeared", track(emotion=("happy", "neutral")[i]), time.time()))
                pub.state([track()] * (i + 1), time.time())
                pub.stats(STATS)
            browser.get(dash.url + "/kiosk/kiosk-b")  # before kiosk-b exists: no history (404), the page says so
            wait_until(lambda: js(browser, "return window.edged.historyStatus") == 404, 15, "the history's 404")
            assert charted(browser) == -1 and browser.find_element("id", "unseen").is_displayed()
            kiosks = [kiosk(broker.port, name, tmp_path) for name in ("kiosk-a", "kiosk-b")]
            # The chart gains points as the real kiosk's events arrive (live: no reload).
            wait_until(lambda: charted(browser) >= 1, 40, "points in the emotion chart")
            assert js(browser, "return window.edged.updates") > 1
            assert js(browser, "return document.querySelectorAll('#events tbody tr').length") >= 1
            assert browser.find_element("css selector", "h1").text == "kiosk-b"
            assert not browser.find_element("id", "unseen").is_displayed()  # seen now

            browser.get(dash.url + "/")
            wait_until(lambda: {name: status for name, status in table(browser).items()} == {
                "kiosk-a": "online", "kiosk-b": "online", "lobby-sim-1": "online", "lobby-sim-2": "online"}, 20,
                "four kiosks online on the page")
            wait_until(lambda: row(dash, "kiosk-a").get("fps"), 10, "kiosk-a's stats")
            time.sleep(1)
            screenshot(browser, "overview", tmp_path)
            kiosks[0].send_signal(signal.SIGKILL)  # no clean stop: the broker publishes its last will
            wait_until(lambda: table(browser).get("kiosk-a") == "offline", 20, "kiosk-a offline on the page")
            assert "kiosk-a" in js(browser, "return document.getElementById('alerts').textContent")
            # its last fps and faces are history, not the present: shown as "-" (the fleet's faces leave it out)
            wait_until(lambda: js(browser, "return [...document.querySelectorAll('#devices tbody tr')]"
                                           ".find(tr => tr.cells[0].textContent == 'kiosk-a')"
                                           ".cells[3].textContent") == "-", 10, "kiosk-a's fps as -")
            assert js(browser, "return [...document.querySelectorAll('#devices tbody tr')]"
                               ".find(tr => tr.cells[0].textContent == 'kiosk-a').cells[4].textContent") == "-"
            # nothing new from it, yet its "last seen" grows every second, as its alert's age does (not only at
            # the full update every 5 s)
            ages = []
            for _ in range(3):
                ages.append(js(browser, "return [...document.querySelectorAll('#devices tbody tr')]"
                                        ".find(tr => tr.cells[0].textContent == 'kiosk-a').cells[2].textContent"))
                time.sleep(1.1)
            assert len(set(ages)) == 3, ages
            assert table(browser)["lobby-sim-1"] == "online"

            # Sorting: by device name, then reversed.
            browser.find_element("css selector", "th[data-key=device]").click()
            assert list(table(browser)) == ["kiosk-a", "kiosk-b", "lobby-sim-1", "lobby-sim-2"]
            browser.find_element("css selector", "th[data-key=device]").click()
            assert list(table(browser)) == ["lobby-sim-2", "lobby-sim-1", "kiosk-b", "kiosk-a"]

            browser.get(dash.url + "/kiosk/kiosk-b")
            wait_until(lambda: charted(browser) >= 1, 15, "kiosk-b's history")
            time.sleep(1)
            screenshot(browser, "kiosk", tmp_path)
            browser.get(dash.url + "/trend?group=kiosk-")
            wait_until(lambda: charted(browser) >= 1, 15, "the group's trend")
    finally:
        for pub in sims:
            pub.close()
        for process in kiosks:
            if process.poll() is None:
                process.terminate()
            process.communicate(timeout=20)


def test_mqtt_strings_render_as_text_and_the_page_says_what_is_down(broker, browser, tmp_path):
    pub = publisher(broker.port, XSS)
    try:
        with DashboardProcess(broker.port, tmp_path / "dashboard") as dash:
            pub.event(TrackEvent("face_appeared", track(emotion="happy"), time.time()))
            pub.stats({**STATS, "fps": 0.0})  # an alert whose text names the device
            browser.get(dash.url + "/")
            wait_until(lambda: XSS in table(browser), 15, "the kiosk with markup in its id")
            # The id is text: no element was made from it and nothing ran (an alert() would block the driver).
            assert js(browser, "return document.querySelectorAll('main img').length") == 0
            assert XSS in js(browser, "return document.getElementById('alerts').textContent")
            assert js(browser, "return document.querySelector('#devices td.device a').getAttribute('href')") == \
                "/kiosk/" + quote(XSS, safe="()")
            browser.find_element("css selector", "#devices td.device a").click()
            wait_until(lambda: js(browser, "return window.edged.updates") > 0, 15, "the kiosk page's first update")
            assert browser.find_element("css selector", "h1").text == XSS
            assert browser.title.startswith(XSS)
            assert js(browser, "return document.querySelectorAll('img').length") == 0
            assert js(browser, "return document.getElementById('banner-broker').hidden") is True

            broker.stop()
            wait_until(lambda: not js(browser, "return document.getElementById('banner-broker').hidden"), 10,
                       "the broker banner")
            assert "no connection to the MQTT broker" in browser.find_element("id", "banner-broker").text
        # The dashboard itself is gone now.
        wait_until(lambda: not js(browser, "return document.getElementById('banner-page').hidden"), 10,
                   "the page's own banner")
        assert "no live connection to the dashboard" in browser.find_element("id", "banner-page").text
        assert json.loads(js(browser, "return JSON.stringify(window.edged.lastUpdate.broker)"))["connected"] is False
    finally:
        pub.close()


AXES = """return Object.fromEntries(Object.entries(window.edged.charts).map(([name, u]) => [name,
  Object.fromEntries(["x", ...u.series.slice(1).map((s) => s.scale)].map((scale) => {
    const axis = u.axes.find((a) => a.scale === scale && a.show !== false);
    const labels = axis ? (axis._values || []).filter((v) => v !== null && v !== "").map(String) : [];
    return [scale, { min: u.scales[scale].min, labels }];
  }))]))"""


def axes(driver) -> dict[str, dict[str, dict]]:
    """chart -> scale of each of its series (and x) -> {"min": the scale's lowest value, "labels": the tick labels
    of the axis drawn for that scale ([] when none is)}."""
    return js(driver, AXES)


def test_every_chart_has_labelled_axes_for_each_scale_and_counts_start_at_zero(broker, browser, tmp_path):
    # Two minutes of history with faces 0.72 and 0.75 and fps 14.8 and 15.2: autoscaled, each axis would start
    # near its lowest value and the small change would fill the chart's height.
    workdir = tmp_path / "dashboard"
    workdir.mkdir()
    History(workdir / "history.sqlite3", 86_400).close(time.time())
    minute = int(time.time() // 60 * 60)
    with contextlib.closing(sqlite3.connect(workdir / "history.sqlite3")) as db, db:
        db.executemany("INSERT INTO minutes (device, minute, happy, faces_sum, faces_n, fps_sum, fps_n, camera_down, "
                       "stats_n) VALUES ('lobby-axes', ?, ?, ?, 100, ?, 1, ?, 1)",
                       [(minute - 120, 3, 72, 14.8, 0), (minute - 60, 4, 75, 15.2, 1)])
        db.execute("INSERT INTO devices VALUES ('lobby-axes', ?, ?, 'online')", (time.time(), time.time()))
    with DashboardProcess(broker.port, workdir) as dash:
        pages = {"/kiosk/lobby-axes": {"emotions", "faces", "fps"}, "/trend?group=lobby-": {"emotions", "faces"}}
        for path, charts in pages.items():
            browser.get(dash.url + path)
            wait_until(lambda c=charts: charted(browser) == 7 and set(js(browser, "return Object.keys(window.edged."
                                                                       "charts)")) == c, 15, f"the charts of {path}")
            found = wait_until(lambda: (a := axes(browser)) and all(s["labels"] for c in a.values()
                                                                  for s in c.values()) and a, 5,
                               f"tick labels on every axis of {path}")
            for name, scales in found.items():
                for scale, axis in scales.items():
                    if scale not in ("x", "camera"):
                        assert axis["min"] == 0, (path, name, scale, axis)
            if "fps" in charts:
                assert set(found["fps"]) == {"x", "fps", "camera"}
                assert found["fps"]["camera"]["labels"] == ["down", "up"]


def test_times_are_the_browsers_local_time_everywhere_with_the_zone_shown(broker, browser, tmp_path):
    tokyo = timezone(timedelta(hours=9))  # no summer time, and not UTC: a shown UTC time cannot pass
    pub = publisher(broker.port, "lobby-time")
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"})
    try:
        with DashboardProcess(broker.port, tmp_path / "dashboard") as dash:
            pub.event(TrackEvent("face_appeared", track(emotion="happy"), time.time()))
            wait_until(lambda: row(dash, "lobby-time").get("seq", {}).get("events", {}).get("last") == 1, 10, "the event")
            ts = get_json(dash.url + "/api/devices/lobby-time")["events"][0]["ts"]
            browser.get(dash.url + "/kiosk/lobby-time")
            shown = wait_until(lambda: js(browser, "const td = document.querySelector('#events tbody td'); "
                                                   "return td && td.textContent"), 15, "the events table")
            assert shown == datetime.fromisoformat(ts).astimezone(tokyo).strftime("%H:%M:%S")
            assert browser.find_element("css selector", ".zone").text == "times in Asia/Tokyo (UTC+09:00)"
            # The charts' time axis is in the same zone, and 24-hour as the events are.
            ticks = wait_until(lambda: js(browser, "const a = window.edged.charts.emotions?.axes[0]; "
                                                   "return a && a._values && [a._splits, a._values]"), 10, "the x axis")
            assert ticks[1]
            for at, label in zip(*ticks, strict=True):
                assert label.split("\n")[0] == datetime.fromtimestamp(at, tokyo).strftime("%H:%M"), (at, label)
    finally:
        browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ""})
        pub.close()


def test_one_kiosk_one_face_one_bad_message_are_singular_ages_read_alike_and_nothing_fails_to_load(
        broker, browser, tmp_path):
    pub = publisher(broker.port, "lobby-one")
    raw = Subscriber(broker.port, "unused")
    try:
        with DashboardProcess(broker.port, tmp_path / "dashboard") as dash:
            pub.state([track()], time.time())
            pub.stats(STATS)
            raw.publish("edged/lobby-one/state/extra", "{}")
            wait_until(lambda: row(dash, "lobby-one").get("malformed") == 1 and row(dash, "lobby-one")["faces"] == 1,
                       10, "the kiosk's face and bad message")
            browser.get_log("browser")  # what earlier tests left in the console
            browser.get(dash.url + "/")
            wait_until(lambda: browser.find_element("id", "fleet-summary").text
                       == "1 kiosk, 1 online, 1 face in view, 1 bad message", 15, "the fleet summary in the singular")
            # One rule for ages: the page's (rows and facts, counted live) says them as edged.fleet's alerts do.
            for seconds in (0, 89, 90, 109, 5399, 5400, 7200):
                assert js(browser, f"return window.edged.format.ago({seconds})") == duration(seconds) + " ago"
            for path in ("/kiosk/lobby-one", "/trend", "/api/fleet", "/metrics"):
                browser.get(dash.url + path)
                time.sleep(0.5)
            # No request failed on any page: no 404 for /favicon.ico, nothing else either.
            failed = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
            assert failed == []
    finally:
        raw.close()
        pub.close()


LONG = "kiosk-" + "0123456789abcdef" * 4  # an id with nowhere to break


def test_on_a_phone_the_overview_is_cards_that_fit_and_bad_messages_are_counted(broker, browser, tmp_path):
    pubs = [publisher(broker.port, name) for name in ("lobby-1", LONG)]
    raw = Subscriber(broker.port, "unused")
    try:
        with DashboardProcess(broker.port, tmp_path / "dashboard") as dash:
            for pub in pubs:
                pub.event(TrackEvent("face_appeared", track(emotion="happy"), time.time()))
                pub.stats(STATS)
            # A kiosk whose status is not the contract, and a topic no kiosk publishes: both counted, per device.
            raw.publish(f"edged/{LONG}/status", "rebooting")
            raw.publish(f"edged/{LONG}/state/extra", "{}")
            wait_until(lambda: row(dash, LONG).get("malformed") == 2, 10, "two bad messages")
            assert row(dash, LONG)["last_malformed"] == "unknown topic 'state/extra'"
            metrics = text_string_to_metric_families(get(dash.url + "/metrics")[2].decode())
            assert {s.labels["device"]: s.value for f in metrics if f.name == "edged_device_malformed"
                    for s in f.samples} == {LONG: 2, "lobby-1": 0}
            browser.set_window_size(375, 800)
            for path in ("/", f"/kiosk/{quote(LONG)}", "/trend"):
                browser.get(dash.url + path)
                wait_until(lambda: js(browser, "return window.edged.updates") > 0, 15, f"{path} live")
                time.sleep(0.5)
                width = js(browser, "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
                assert width[1] <= 375 and width[0] <= width[1], (path, width)
                # Nor does anything inside it (a table in a scrolling box would scroll sideways on its own).
                wide = js(browser, "return [...document.querySelectorAll('main *')].filter(e => e.scrollWidth > "
                                   "e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible').map(e => e.id || "
                                   "e.className)")
                assert wide == [], (path, wide)
                if path == "/":
                    # Rows are cards: every cell says which column it is; the bad count is shown, its reason on hover.
                    wait_until(lambda: LONG in table(browser), 10, "the kiosks")
                    cell = js(browser, f"return [...document.querySelectorAll('#devices tbody tr')].find("
                                       f"tr => tr.dataset.device === '{LONG}').querySelector('td.malformed')")
                    assert cell.text == "2" and cell.get_attribute("data-label") == "bad"
                    assert "unknown topic 'state/extra'" in cell.get_attribute("title")
                    assert js(browser, "return getComputedStyle(document.querySelector('#devices tbody tr')).display") \
                        == "block"
                    assert "2 bad messages" in browser.find_element("id", "fleet-summary").text
                    screenshot(browser, "phone", tmp_path)
    finally:
        browser.set_window_size(1280, 860)
        raw.close()
        for pub in pubs:
            pub.close()


def _history_rows(workdir: Path, device: str, rows: list[tuple[int, int, int, float, int]]) -> None:
    """A dashboard history file with `device` remembered and its (minute, happy, faces_sum, fps, camera_down) rows
    (one state and one stats sample each)."""
    workdir.mkdir(parents=True, exist_ok=True)
    History(workdir / "history.sqlite3", 86_400).close(time.time())
    with contextlib.closing(sqlite3.connect(workdir / "history.sqlite3")) as db, db:
        db.executemany("INSERT INTO minutes (device, minute, happy, faces_sum, faces_n, fps_sum, fps_n, camera_down, "
                       "stats_n) VALUES (?, ?, ?, ?, 1, ?, 1, ?, 1)", [(device, *r) for r in rows])
        db.execute("INSERT INTO devices VALUES (?, ?, ?, 'online')", (device, time.time(), time.time()))


LEGEND = """const u = window.edged.charts.emotions, i = arguments[0];
return u.series.slice(1).map((s, k) => [u.data[k + 1][i], s.value(u, u.data[k + 1][i], k + 1, i)]);"""


def test_no_data_is_a_gap_in_the_emotion_chart_not_zero(broker, browser, tmp_path):
    # Two minutes with samples (one of them without events) in an hour of nothing: the emotion chart is drawn for
    # those two only; before, every layer was 0 in every minute, as if the kiosk had been there seeing nobody.
    workdir = tmp_path / "dashboard"
    minute = int(time.time() // 60 * 60)
    _history_rows(workdir, "lobby-gap", [(minute - 600, 3, 2, 15.0, 0), (minute - 540, 0, 1, 15.0, 0)])
    with DashboardProcess(broker.port, workdir) as dash:
        history = get_json(dash.url + "/api/history?device=lobby-gap")
        events, empty = history["t"].index(minute - 600), history["t"].index(minute - 660)
        for path in ("/kiosk/lobby-gap", "/trend?group=lobby-g"):
            browser.get(dash.url + path)
            wait_until(lambda: charted(browser) == 3, 15, f"the emotion chart of {path}")
            layers = js(browser, "return window.edged.charts.emotions.data.slice(1).map(l => l.map(v => v === null))")
            gaps = [i for i, gap in enumerate(layers[0]) if gap]
            assert all(layer == layers[0] for layer in layers), path  # every layer has the same gaps
            assert gaps == [i for i in range(len(history["t"])) if i not in (events, events + 1)], path
            # The legend says "-" for a minute without a sample, a count (0 too) where there were samples.
            assert {text for _, text in browser.execute_script(LEGEND, empty)} == {"-"}, path
            shown = dict(zip(["neutral", "surprise", "sad", "happy", "fear", "disgust", "angry"],
                             [text for _, text in browser.execute_script(LEGEND, events)], strict=True))
            assert shown["happy"] == "3" and shown["sad"] == "0", (path, shown)
            assert {text for _, text in browser.execute_script(LEGEND, events + 1)} == {"0"}, path


# Pixels of a series' colour in a 15-pixel square of a chart's canvas around one of its values.
MARKER = """const [name, si, i, colour] = arguments;
const u = window.edged.charts[name], s = u.series[si];
const x = Math.round(u.valToPos(u.data[0][i], "x", true)), y = Math.round(u.valToPos(u.data[si][i], s.scale, true));
const rgb = [1, 3, 5].map((k) => parseInt(colour.slice(k, k + 2), 16));
const pixels = u.ctx.getImageData(x - 7, y - 7, 15, 15).data;
let n = 0;
for (let p = 0; p < pixels.length; p += 4) {
  if (pixels[p + 3] > 200 && rgb.every((c, k) => Math.abs(pixels[p + k] - c) < 40)) n += 1;
}
return n;"""

COLOURS = {"faces": "#1a73e8", "fps": "#188038", "camera up": "#d93025", "happy": "#f9ab00", "angry": "#d93025"}


def test_a_lone_bucket_is_visible_in_every_chart_of_the_day_view(broker, browser, tmp_path):
    # 15 minutes of data 5 hours ago, nothing around it: one bucket of the day's 96, between gaps. uPlot draws no
    # point markers at that density, and a value without a neighbour draws no line: the charts looked empty.
    workdir = tmp_path / "dashboard"
    bucket = int(time.time() // 900 * 900) - 5 * 3600
    _history_rows(workdir, "lobby-lone", [(bucket + 60 * m, 1, 2, 15.0, 0) for m in range(15)])
    with DashboardProcess(broker.port, workdir) as dash:
        history = get_json(dash.url + "/api/history?range=day&device=lobby-lone")
        i = history["t"].index(bucket)
        assert len(history["t"]) == 96 and history["faces"][i - 1:i + 2] == [None, 2, None]
        for path, charts in (("/kiosk/lobby-lone?range=day", ("emotions", "faces", "fps")),
                             ("/trend?group=lobby-l&range=day", ("emotions", "faces"))):
            browser.get(dash.url + path)
            wait_until(lambda c=charts: charted(browser) == 15 and set(js(browser, "return Object.keys(window.edged."
                                                                        "charts)")) == set(c), 15, f"the charts of {path}")
            time.sleep(0.3)  # drawn
            for name in charts:
                labels = js(browser, f"return window.edged.charts[{name!r}].series.map(s => s.label)")
                shown = {label: browser.execute_script(MARKER, name, si, i, COLOURS[label])
                         for si, label in enumerate(labels) if label in COLOURS}
                assert shown and all(n >= 8 for n in shown.values()), (path, name, shown)


def covers(driver) -> tuple[str, list[tuple[str, str]], bool]:
    """The trend page's line on the kiosks it covers: (its text, [(link text, href)], whether it is the warning)."""
    return js(driver, "const p = document.getElementById('covers'); return [p.textContent, [...p.querySelectorAll('a')]"
                      ".map(a => [a.textContent, a.getAttribute('href')]), p.classList.contains('none')]")


def test_the_trend_page_says_which_kiosks_it_covers_and_when_none_match(broker, browser, tmp_path):
    workdir = tmp_path / "dashboard"
    minute = int(time.time() // 60 * 60)
    for name in ("lobby-1", "lobby-2"):
        _history_rows(workdir, name, [(minute - 120, 1, 1, 15.0, 0)])
    hall = [f"hall-{n:02}" for n in range(13)]
    with contextlib.closing(sqlite3.connect(workdir / "history.sqlite3")) as db, db:
        db.executemany("INSERT INTO devices VALUES (?, ?, ?, 'online')", [(n, time.time(), time.time()) for n in hall])
    pub = publisher(broker.port, XSS)  # one heard live, with markup in its id
    try:
        with DashboardProcess(broker.port, workdir) as dash:
            pub.stats(STATS)
            wait_until(lambda: row(dash, XSS).get("fps"), 10, "the live kiosk")
            assert get_json(dash.url + "/api/history?group=lobby-")["devices"] == ["lobby-1", "lobby-2"]
            assert get_json(dash.url + "/api/history?group=")["devices"] == sorted([XSS, "lobby-1", "lobby-2", *hall])
            assert get_json(dash.url + "/api/history?group=%3Cimg")["devices"] == [XSS]
            assert get_json(dash.url + "/api/history?device=lobby-1")["devices"] == ["lobby-1"]
            nobody = get_json(dash.url + "/api/history?group=cafe-")
            assert nobody["devices"] == [] and nobody["faces"] == [None] * 60

            browser.get(dash.url + "/trend?group=lobby-")
            wait_until(lambda: covers(browser)[0], 15, "the kiosks covered")
            assert covers(browser) == ["2 kiosks: lobby-1, lobby-2", [["lobby-1", "/kiosk/lobby-1"],
                                                                     ["lobby-2", "/kiosk/lobby-2"]], False]
            browser.get(dash.url + "/trend?group=%3Cimg")
            wait_until(lambda: covers(browser)[0], 15, "the kiosk covered")
            assert covers(browser) == [f"1 kiosk: {XSS}", [[XSS, "/kiosk/" + quote(XSS, safe="()")]], False]
            assert js(browser, "return document.querySelectorAll('main img').length") == 0
            browser.get(dash.url + "/trend?group=hall-")  # too many to name: counted
            wait_until(lambda: covers(browser)[0], 15, "the kiosks covered")
            assert covers(browser) == ["13 kiosks (the fleet page lists them)", [], False]
            browser.get(dash.url + "/trend")
            wait_until(lambda: covers(browser)[0], 15, "the fleet covered")
            assert covers(browser)[0] == "the whole fleet: 16 kiosks (the fleet page lists them)"
            browser.get(dash.url + "/trend?group=cafe-")
            wait_until(lambda: covers(browser)[0], 15, "the note")
            text, links, warning = covers(browser)
            assert links == []
            assert text.startswith("No kiosk's id starts with \u201ccafe-\u201d: the charts stay empty") and warning
            assert browser.find_element("id", "covers").is_displayed()
    finally:
        pub.close()
