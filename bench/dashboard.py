"""Does `edged dashboard` keep up with a fleet? N simulated kiosks (bench/fleet.py's, each a real MqttPublisher) publish
to a local Mosquitto; the dashboard, a real `python -m edged dashboard` pinned to one core with taskset, subscribes
to all of it and pushes live updates to a Server-Sent Events client in this process. Everything else (this
process, the broker, the simulators, chromium) is kept off that core.

    .venv/bin/python bench/dashboard.py --devices 1000 --seconds 1800 --browser

Printed every --sample seconds: the dashboard's ingest rate (from its own /metrics counter) against the nominal
offered rate, its CPU use, its run-queue wait (`wait %`: the time its threads were ready to run but the core ran
something else, from /proc/<pid>/task/*/schedstat; CPU competition shows here), its RSS, and the latency from an MQTT
message to the SSE client (a probe kiosk publishes a state every 0.25 s; latency = arrival of the update that
carries it minus the state's `ts`, same clock; the update interval, EDGED_DASHBOARD__PUSH_INTERVAL_S = 0.5 s, is
part of it). At the end: messages sent by the simulators against messages the dashboard received (what is left is
backlog or loss at the broker), the run-queue wait over the run, latency p50/p95/max, the size of the live updates,
RSS first/last/max. With --browser, headless chromium opens the overview once the fleet is up: time until every
kiosk's row is drawn, and the time each live update takes to apply (p50/p95/max) and the browser's long tasks.

--nice N gives the dashboard niceness N. Where autogroups are on (/proc/sys/kernel/sched_autogroup_enabled = 1, the
default of most desktop and many server kernels), the scheduler first shares a core between sessions and only then
between the processes of a session, so a plain nice does nothing against a job started from another shell: the
dashboard is started in a session of its own and its autogroup gets niceness N too (/proc/<pid>/autogroup, root).
The first printed line says what was set, or that it could not be.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleet import SCORES, STATS, cpu_seconds, free_port, kiosk_worker, make_publisher, start_broker

from edged.faces import Track
from edged.payloads import utc_iso

PROBE = "probe-latency"
ROOT = Path(__file__).resolve().parent.parent


def fast_worker(port: int, devices: list[str], seconds: float, rates: dict[str, float], ready: Any,
                results: Any) -> None:
    """The same traffic as bench/fleet.py's kiosks (contract payloads, seq per device and topic, QoS and retain as
    MqttPublisher sends them) from 4 paho clients instead of one per kiosk: on a small machine the per-kiosk
    simulator cannot offer 1 000 kiosks' rate and leave the dashboard a core. Same arguments and results."""
    clients = []
    for i in range(4):
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-feed-{os.getpid()}-{i}", protocol=paho.MQTTv5)
        client.max_inflight_messages_set(1000)
        client.connect("127.0.0.1", port)
        client.loop_start()
        clients.append(client)
    face = {"track": 1, "emotion": "happy", "confidence": 0.6, "scores": SCORES, "box": [100, 80, 120, 120]}
    stats = {**STATS, "version": "bench", "model_id": "emotions-bench", "cpu_temp_c": None}
    seqs = {(d, k): 0 for d in devices for k in ("events", "state", "stats")}
    sent = {d: {"events": 0, "state": 0, "stats": 0} for d in devices}
    for n, device in enumerate(devices):
        clients[n % 4].publish(f"edged/{device}/status", "online", qos=1, retain=True)

    def payload(device: str, kind: str) -> str:
        seqs[(device, kind)] += 1
        head = {"v": 1, "device": device, "ts": utc_iso(time.time()), "seq": seqs[(device, kind)]}
        if kind == "events":
            return json.dumps({**head, "type": "face_appeared", **face})
        if kind == "state":
            return json.dumps({**head, "faces": [face]})
        return json.dumps({**head, **stats})

    ready.wait()
    start = time.monotonic()
    rng = np.random.default_rng(os.getpid())
    due = {(d, k): start + float(rng.uniform(0, 1)) / rate for d in devices for k, rate in rates.items() if rate > 0}
    pause = threading.Event()
    while not pause.wait(0.005):
        now = time.monotonic()
        if now - start >= seconds:
            break
        for n, ((device, kind), at) in enumerate(due.items()):
            if now < at:
                continue
            qos, retain = (1, False) if kind == "events" else (0, True)
            clients[n % 4].publish(f"edged/{device}/{kind}", payload(device, kind), qos=qos, retain=retain)
            sent[device][kind] += 1
            due[(device, kind)] = at + 1.0 / rates[kind]
    for client in clients:
        client.disconnect()
        client.loop_stop()
    results.put({"sent": sent, "cpu_s": time.process_time(), "elapsed_s": time.monotonic() - start})


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sched_ns(pid: int) -> tuple[int, int]:
    """(on-CPU ns, run-queue wait ns) summed over the process's live threads (/proc/<pid>/task/*/schedstat): the
    wait is time a thread was ready to run but the CPU was busy with something else."""
    run = wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            fields = (task / "schedstat").read_text().split()
            run, wait = run + int(fields[0]), wait + int(fields[1])
    return run, wait


def set_priority(pid: int, nice: int) -> str:
    """Give process `pid` (alone in its own session) niceness `nice`, in words what was done. With autogroups on
    (/proc/sys/kernel/sched_autogroup_enabled), CFS first shares a CPU between sessions' groups and only then
    between the processes of a group, so a task's nice does nothing against another session's job: the group's
    nice (/proc/<pid>/autogroup) is what counts there, and it is set too."""
    done = []
    try:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
        done.append(f"nice {nice}")
    except OSError as exc:
        done.append(f"nice {nice} refused ({exc.strerror})")
    enabled = Path("/proc/sys/kernel/sched_autogroup_enabled")
    if enabled.exists() and enabled.read_text().strip() == "1":
        try:
            Path(f"/proc/{pid}/autogroup").write_text(str(nice))
            done.append(f"its autogroup nice {nice} ({Path(f'/proc/{pid}/autogroup').read_text().strip()})")
        except OSError as exc:
            done.append(f"autogroup nice refused ({exc.strerror}): against other sessions' jobs it has an "
                        "equal share of its core whatever its nice")
    return "; ".join(done)


def messages_total(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("edged_dashboard_messages_total "):
                return float(line.split()[1])
    return 0.0


class LiveClient:
    """Reads /api/live; records, for each new `last_seen_utc` of the probe, arrival time minus that `ts`."""

    def __init__(self, url: str) -> None:
        self.latencies: list[tuple[float, float]] = []  # (arrival, latency s)
        self.devices = 0
        self.sizes: list[int] = []  # bytes of each update
        self._response = urllib.request.urlopen(url + "/api/live", timeout=30)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        seen = None
        with contextlib.suppress(Exception):  # the stream ends when the dashboard stops
            for raw in self._response:
                if not raw.startswith(b"data: "):
                    continue
                now = time.time()
                update = json.loads(raw[6:])
                if update.get("full"):
                    self.devices = len(update["devices"])
                self.sizes.append(len(raw))
                row = update["devices"].get(PROBE)  # between full updates: only the fields that changed
                if row and row.get("last_seen_utc", seen) != seen:
                    seen = row["last_seen_utc"]
                    if seen is not None:
                        self.latencies.append((now, now - seen))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._response.close()


def probe(port: int, stop: threading.Event) -> None:
    pub = make_publisher(port, PROBE)
    pub.start()
    pub.wait_connected(10)
    track = Track(id=1, box=(1, 2, 3, 4), scores={"happy": 1.0}, emotion="happy", first_seen_utc=time.time(),
                  last_seen_utc=time.time())
    while not stop.wait(0.25):
        pub.state([track], time.time())
    pub.close(timeout=5)


def browser_figures(url: str, devices: int, watch_s: float) -> dict[str, object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    try:
        start = time.monotonic()
        driver.get(url + "/")
        while driver.execute_script("return document.querySelectorAll('#devices tbody tr').length") < devices:
            if time.monotonic() - start > 60:
                break
            time.sleep(0.05)
        first_render_s = time.monotonic() - start
        driver.execute_script("window.edged.renderMs = []; window.longTasks = [];"
                              "new PerformanceObserver(l => l.getEntries().forEach(e => window.longTasks.push(e.duration)))"
                              ".observe({type: 'longtask'});")
        time.sleep(watch_s)
        render = np.array(driver.execute_script("return window.edged.renderMs") or [0.0])
        long_tasks = driver.execute_script("return window.longTasks") or []
        rows = driver.execute_script("return document.querySelectorAll('#devices tbody tr').length")
    finally:
        driver.quit()
    return {"rows": rows, "first_render_s": round(first_render_s, 2), "updates": int(render.size),
            "update_ms": {"p50": round(float(np.percentile(render, 50)), 1),
                          "p95": round(float(np.percentile(render, 95)), 1), "max": round(float(render.max()), 1)},
            "long_tasks": len(long_tasks), "longest_task_ms": round(max(long_tasks, default=0.0), 1)}


def run(args: argparse.Namespace) -> dict[str, object]:
    rates = {"events": args.event_rate, "state": args.state_rate, "stats": 1.0 / args.stats_interval}
    nominal = args.devices * sum(rates.values()) + 4  # and the probe
    # Everything but the dashboard (this process, the broker, the simulators and chromium inherit it) keeps off the
    # dashboard's core, so the figures are the dashboard's and not its neighbours'.
    others = set(range(os.cpu_count() or 1)) - {args.core}
    if others:
        os.sched_setaffinity(0, others)
    with tempfile.TemporaryDirectory(prefix="edged-dashboard-bench-") as tmp:
        port, http = free_port(), free_port()
        broker = start_broker(Path(tmp), port, args.max_queued, nodelay=True)
        clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGED_")}
        env = {**clean, "EDGED_MQTT__HOST": "127.0.0.1", "EDGED_MQTT__PORT": str(port),
               "EDGED_DASHBOARD__PORT": str(http), "EDGED_DASHBOARD__DATABASE": f"{tmp}/history.sqlite3",
               "EDGED_LOG_LEVEL": "WARNING"}
        command = ["taskset", "-c", str(args.core), sys.executable, "-m", "edged", "dashboard"]
        # Its own session, so its own autogroup: --nice then raises the dashboard alone, not this process too.
        dashboard = subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True)
        priority = "not changed (--nice 0)"
        if args.nice:  # e.g. -10: ahead of a job sharing the core, as if the core were the dashboard's own
            priority = set_priority(dashboard.pid, args.nice)
        print(f"dashboard pid {dashboard.pid} on core {args.core}; priority: {priority}", flush=True)
        url = f"http://127.0.0.1:{http}"
        stop = threading.Event()
        samples: list[dict[str, float]] = []
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    messages_total(url)
                    break
                except OSError:
                    if time.monotonic() > deadline or dashboard.poll() is not None:
                        raise SystemExit("the dashboard did not start") from None
                    time.sleep(0.2)
            live = LiveClient(url)
            names = [f"kiosk-{i:05d}" for i in range(args.devices)]
            per_process = args.devices if args.feeder == "fast" else args.per_process
            processes = max(1, min(args.devices // per_process + (args.devices % per_process > 0), args.devices))
            shares = [names[i::processes] for i in range(processes)]
            ctx = mp.get_context("spawn")
            ready, results = ctx.Barrier(processes + 1), ctx.Queue()
            worker = fast_worker if args.feeder == "fast" else kiosk_worker
            workers = [ctx.Process(target=worker, args=(port, share, args.seconds, rates, ready, results))
                       for share in shares]
            for w in workers:
                w.start()
            ready.wait(timeout=180)
            prober = threading.Thread(target=probe, args=(port, stop), daemon=True)
            prober.start()
            t0, cpu0, got0 = time.monotonic(), cpu_seconds(dashboard.pid), messages_total(url)
            sched0 = sched_ns(dashboard.pid)
            last = (t0, cpu0, got0, sched0)
            browser: dict[str, object] | None = None
            print(f"{'t (s)':>6} {'ingest msg/s':>12} {'nominal':>8} {'CPU %':>6} {'wait %':>6} {'RSS MB':>7} "
                  f"{'latency p50/p95 ms':>19} {'devices':>8}", flush=True)
            while time.monotonic() - t0 < args.seconds:
                time.sleep(min(args.sample, max(0.1, args.seconds - (time.monotonic() - t0))))
                now, cpu, got = time.monotonic(), cpu_seconds(dashboard.pid), messages_total(url)
                sched = sched_ns(dashboard.pid)
                window = [lat for at, lat in live.latencies if at >= time.time() - (now - last[0])]
                lat = np.array(window or [float("nan")]) * 1000
                # wait %: run-queue wait of its threads per second of the sample, in % (CPU competition; 100 % =
                # one thread always ready and waiting)
                sample = {"t": round(now - t0, 1), "ingest": (got - last[2]) / (now - last[0]),
                          "cpu": 100 * (cpu - last[1]) / (now - last[0]),
                          "wait": 100 * (sched[1] - last[3][1]) / 1e9 / (now - last[0]), "rss": rss_mb(dashboard.pid),
                          "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95))}
                samples.append(sample)
                print(f"{sample['t']:6.0f} {sample['ingest']:12.0f} {nominal:8.0f} {sample['cpu']:6.0f} {sample['wait']:6.1f} "
                      f"{sample['rss']:7.1f} {sample['p50']:9.0f}/{sample['p95']:<9.0f} {live.devices:8d}", flush=True)
                last = (now, cpu, got, sched)
                if args.browser and browser is None and now - t0 >= min(30, args.seconds / 3):
                    browser = browser_figures(url, args.devices, args.browser_seconds)
                    print(f"browser: {json.dumps(browser)}", flush=True)
            outcomes = [results.get(timeout=300) for _ in workers]
            for w in workers:
                w.join(30)
            sent = sum(sum(c.values()) for o in outcomes for c in o["sent"].values())
            time.sleep(5)  # drain
            received = messages_total(url) - got0
            sched_end = sched_ns(dashboard.pid)
            stop.set()
            prober.join(10)
            live.close()
        finally:
            stop.set()
            dashboard.terminate()
            dashboard.wait(30)
            broker.stop()
    lat_all = np.array([lat for _, lat in live.latencies] or [float("nan")]) * 1000
    steady = samples[1:] or samples
    rss = [s["rss"] for s in samples]
    return {
        "devices": args.devices, "feeder": args.feeder, "seconds": args.seconds, "core": args.core, "nice": args.nice,
        "priority": priority,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "nominal_msgs_per_s": round(nominal, 1),
        "sent_by_simulators": sent, "received_by_dashboard": int(received),
        "ingest_msgs_per_s_mean": round(float(np.mean([s["ingest"] for s in steady])), 1),
        "dashboard_cpu_pct_mean": round(float(np.mean([s["cpu"] for s in steady])), 1),
        # run-queue wait over the run: seconds its threads were ready but not running, and that per second run
        "run_queue_wait": {"s": round((sched_end[1] - sched0[1]) / 1e9, 1),
                           "per_cpu_s": round((sched_end[1] - sched0[1]) / max(1, sched_end[0] - sched0[0]), 3),
                           "pct_mean": round(float(np.mean([s["wait"] for s in steady])), 1),
                           "pct_max": round(float(max(s["wait"] for s in samples)), 1)},
        "latency_ms": {"p50": round(float(np.nanpercentile(lat_all, 50)), 1),
                       "p95": round(float(np.nanpercentile(lat_all, 95)), 1),
                       "max": round(float(np.nanmax(lat_all)), 1), "n": len(live.latencies)},
        "update_kb": {"mean": round(float(np.mean(live.sizes or [0])) / 1000, 1),
                      "max": round(max(live.sizes, default=0) / 1000, 1), "n": len(live.sizes)},
        "rss_mb": {"first": round(rss[0], 1), "last": round(rss[-1], 1), "max": round(max(rss), 1)},
        "browser": browser,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000, help="simulated kiosks (default 1000)")
    parser.add_argument("--seconds", type=float, default=120, help="publishing time (default 120)")
    parser.add_argument("--sample", type=float, default=10, help="seconds between two printed samples (default 10)")
    parser.add_argument("--core", type=int, default=1, help="CPU the dashboard is pinned to (default 1)")
    parser.add_argument("--nice", type=int, default=0,
                        help="the dashboard's niceness, and its autogroup's where autogroups are on (default 0; -10 "
                        "puts it ahead of other jobs on its core; root)")
    parser.add_argument("--per-process", type=int, default=250, help="kiosks per simulator process (default 250)")
    parser.add_argument("--event-rate", type=float, default=1.0, help="events per second per kiosk (default 1)")
    parser.add_argument("--state-rate", type=float, default=2.0, help="states per second per kiosk (default 2)")
    parser.add_argument("--stats-interval", type=float, default=10.0, help="seconds between stats (default 10)")
    parser.add_argument("--max-queued", type=int, default=100_000,
                        help="the broker's max_queued_messages: a dashboard that lags then shows as backlog, not loss")
    parser.add_argument("--feeder", choices=("fleet", "fast"), default="fleet",
                        help="fleet: bench/fleet.py's kiosks, one MqttPublisher each (default); fast: the same "
                        "messages from 4 MQTT clients in one process, for machines too small for the former")
    parser.add_argument("--browser", action="store_true", help="measure the overview in headless chromium")
    parser.add_argument("--browser-seconds", type=float, default=20, help="how long to watch the page's updates")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2), flush=True)


if __name__ == "__main__":
    main()
