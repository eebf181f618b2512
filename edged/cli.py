"""The `edged` command line: run the daemon, check an installation, show the configuration, try images, watch,
serve the dashboard.

Exit status: 0 ok; 1 a check failed, an image could not be read, or `watch --once` saw alerts; 2 bad command line;
69 the camera, broker or the outbox's disk is unavailable, another edged holds the outbox, or the dashboard cannot
listen on its address or another dashboard holds its history; 78 configuration (a bad EDGED_* variable, a dashboard
listening beyond loopback without auth, a device id, topic prefix, client id or host the broker would not take, the
model, the Haar cascade, a video file that is missing or unreadable, a state directory or outbox that cannot be
written, TLS files that are not PEM, any configured file this user may not read, picamera2 or the dashboard extra
not installed), from `run` and, for a failed item, from `check`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from edged import __version__
from edged.errors import (
    BrokerError,
    CameraError,
    CascadeError,
    ConfigError,
    EdgedError,
    ListenError,
    ModelError,
    OutboxError,
)

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_CONFIG = 0, 1, 69, 78  # sysexits.h: EX_UNAVAILABLE, EX_CONFIG

logger = logging.getLogger("edged")

DESCRIPTION = """\
edged watches a camera, finds faces (Haar cascade), classifies each face's emotion with an int8 TFLite
model, follows faces over time and publishes events, state and stats to an MQTT broker. No image leaves
the device. Everything is configured with EDGED_* environment variables: `edged config` lists them all."""

EPILOG = """\
examples:
  edged config                                      what would run, and the variable for every setting
  EDGED_CAMERA__SOURCE=samples/faces.mp4 edged check   is everything in place? (PASS/FAIL per item)
  EDGED_CAMERA__SOURCE=/dev/video0 EDGED_MQTT__HOST=broker.local edged run
  EDGED_CAMERA__SOURCE=samples/faces.mp4 EDGED_CAMERA__REALTIME=false edged run   a file, as fast as possible
  edged detect photo.jpg other.png                  one JSON line per image: faces, emotions, scores
  EDGED_MQTT__HOST=broker.local edged watch         live fleet view: devices, emotion mix, alerts
  edged watch --once --json                         one JSON snapshot of the fleet; exit 1 on alerts
  EDGED_MQTT__HOST=broker.local edged dashboard     the fleet in a browser: http://127.0.0.1:8080/

camera sources (EDGED_CAMERA__SOURCE): 0 or /dev/video0 (V4L2), picamera2 (Raspberry Pi camera),
  gst:<pipeline ending in appsink> (needs an OpenCV with GStreamer, e.g. JetPack's), rtsp://... or
  http://... streams, or a video file (it ends, and `edged run` exits 0 after publishing what is pending).

exit status: 0 ok, 1 a check or an image failed or `watch --once` saw alerts, 2 usage, 69 camera, broker or
  outbox unavailable (a full disk, or another edged using the same EDGED_STATE_DIR), 78 configuration (bad
  variable, a device id, topic prefix, client id or host the broker would not take, model, Haar cascade, video file,
  state directory, TLS files, a file edged may not read, picamera2 missing; `check` too): systemd does not restart
  the service on 78."""


DASHBOARD_EXTRA = "the dashboard extra: pip install 'edged[dashboard]' (in a clone: pip install '.[dashboard]')"

DASHBOARD_HELP = """\
Subscribe to <prefix>/+/# on the configured broker (EDGED_MQTT__*, EDGED_MQTT_PASSWORD) and serve the fleet in a
browser: an overview, a page per kiosk, the fleet's trend, a JSON API (/api/fleet, /api/devices/<id>,
/api/history, /api/live) and Prometheus /metrics, with per-minute history in SQLite (EDGED_DASHBOARD__DATABASE,
default dashboard.sqlite3 in EDGED_STATE_DIR; one dashboard per file). Read-only: it sends nothing to kiosks.

listening: EDGED_DASHBOARD__HOST:EDGED_DASHBOARD__PORT (127.0.0.1:8080). Any other address needs a token or a user:
  EDGED_DASHBOARD__TOKEN=<16+ characters>   a browser opens http://<host>:<port>/?token=<token> once (a cookie keeps
                                            it logged in EDGED_DASHBOARD__COOKIE_DAYS, 30, after its last visit);
                                            programs send the header Authorization: Bearer <token>
  EDGED_DASHBOARD__USERNAME, __PASSWORD     HTTP basic auth: the browser's own login prompt
  Both may come from systemd credentials: $CREDENTIALS_DIRECTORY/dashboard_token, dashboard_password.
  The dashboard speaks plain HTTP: put a TLS reverse proxy in front of it beyond this machine.

`edged config` lists every EDGED_DASHBOARD__* variable; docs/dashboard.md in the source has the details.

example: EDGED_MQTT__HOST=broker.local edged dashboard   then open http://127.0.0.1:8080/"""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from edged.native import quiet_opencv

    # edged's own messages say what failed; -v shows OpenCV's and FFmpeg's too.
    with contextlib.nullcontext() if args.verbose else quiet_opencv():
        return _command(args)


def _command(args: argparse.Namespace) -> int:
    """The chosen command, its errors turned into a message and an exit status."""
    try:
        return args.command(args)
    except (ConfigError, ModelError, CascadeError) as exc:
        print(f"edged: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (CameraError, BrokerError, OutboxError, ListenError) as exc:
        print(f"edged: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except EdgedError as exc:
        print(f"edged: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ModuleNotFoundError as exc:
        if exc.name != "cv2":
            raise
        print("edged: configuration error: OpenCV is not installed: pip install 'edged[opencv]', or on a Jetson "
              "use JetPack's python3-opencv from a venv made with --system-site-packages", file=sys.stderr)
        return EXIT_CONFIG
    except PermissionError as exc:
        # The components check the files they are given (edged.paths); this is the net for any other one, so that
        # systemd sees 78 (not restarted) instead of a traceback and a crash loop.
        print(f"edged: configuration error: {exc.filename or ''}: permission denied for uid {os.geteuid()} ({exc})",
              file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edged", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"edged {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details (overrides EDGED_LOG_LEVEL)")
    sub = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def add(name: str, command: Callable[[argparse.Namespace], int], help: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(command=command)
        return p

    add("run", _run, "run the daemon until SIGTERM/SIGINT/SIGHUP or the end of a video file",
        "Run the daemon: capture, detect, classify, track, publish. SIGTERM, SIGINT and SIGHUP stop it cleanly "
        "(the broker then shows the device offline). A video file source ends the run with status 0.")
    p = add("check", _check, "check the configuration, model, cascade, camera, outbox and broker (PASS/FAIL per item)",
            "For installers: validate EDGED_* variables, load the model and the Haar cascade, open the camera and "
            "read one frame, read the outbox in EDGED_STATE_DIR (events waiting; nothing is created or changed), "
            "connect to the broker. Prints PASS or FAIL per item; exits 78 when an item failed for its configuration "
            "(a variable, a file edged cannot read, the model or the cascade: what `edged run` exits 78 for), 1 when "
            "only others failed (camera, broker, outbox), 0 when all passed.")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for the broker (default 10)")
    p.add_argument("--skip-broker", action="store_true", help="do not connect to the broker")
    add("config", _config, "print the effective configuration with its variable names (secrets masked)",
        "Print every setting: its EDGED_* variable, the value in effect (from the environment or the default; "
        "secrets masked) and what it means.")
    p = add("detect", _detect, "detect faces and emotions in still images; one JSON line per image",
            "Run detection and classification on still images with the configured detector and model, and print "
            'one JSON line per image: {"image", "width", "height", "faces": [{"box": [x, y, w, h], "emotion", '
            '"confidence", "scores"}]}, or {"image", "error"} for a file that cannot be read.\n\n'
            "example: edged detect kiosk-angle.jpg | jq '.faces[].emotion'")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files (any format OpenCV reads)")
    p = add("bench", _bench, "run the real pipeline on a video file and print speed, latency, CPU and memory",
            "Benchmark: the daemon's pipeline (same detector, classifier, tracker and EDGED_* settings) on VIDEO, as "
            "fast as possible or, with --realtime, paced at the clip's frame rate like a camera. Prints frames, "
            "frames with a face, fps, per-stage p50/p95, capture-to-publish latency p50/p95/p99, CPU time per frame "
            "and peak RSS. Payloads are built and serialised as for MQTT, then discarded, unless --broker is given."
            "\n\nexample: taskset -c 0 edged bench samples/faces-30fps.mp4 --threads 1 --realtime")
    p.add_argument("video", type=Path, metavar="VIDEO", help="a video file OpenCV can read")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="OpenCV and interpreter threads (sets EDGED_DETECTOR__THREADS and EDGED_MODEL__THREADS; default 1)")
    p.add_argument("--realtime", action="store_true", help="pace the clip at its frame rate, dropping what lags")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--broker", metavar="HOST:PORT", help="publish for real to this broker (EDGED_MQTT__* for the rest)")
    p = add("watch", _watch, "show the fleet: devices, faces, emotion mix, alerts (live, or once with --once)",
            "Subscribe to <prefix>/+/# on the configured broker (EDGED_MQTT__*) and show every device: online "
            "state, last seen, fps, faces, the emotion mix over a window, and alerts for devices that went offline "
            "or stale and for gaps or resets in their events seq. Ctrl-C quits.\n\n"
            "examples:\n  edged watch --once --json | jq '.alerts'     one snapshot; exit 1 when there are alerts")
    p.add_argument("--once", action="store_true",
                   help="collect for --wait seconds, print one picture and exit (status 1 when there are alerts)")
    p.add_argument("--json", action="store_true", help="print JSON snapshots instead of tables")
    p.add_argument("--wait", type=float, default=2.0, metavar="SECONDS",
                   help="with --once: how long to collect before printing (default 2)")
    p.add_argument("--window", type=float, default=300.0, metavar="SECONDS",
                   help="emotion mix over the events of the last SECONDS (default 300)")
    p.add_argument("--stale", type=float, default=60.0, metavar="SECONDS",
                   help="alert when an online device sent nothing newer for SECONDS (default 60)")
    p.add_argument("--interval", type=float, default=0.5, metavar="SECONDS", help="redraw every SECONDS (default 0.5)")
    add("dashboard", _dashboard, f"serve the fleet dashboard (web pages, JSON API, /metrics); needs {DASHBOARD_EXTRA}",
        DASHBOARD_HELP)
    return parser


def _settings(args: argparse.Namespace):
    from edged.settings import load_settings

    return load_settings()


def _stop_on_signals() -> threading.Event:
    """One event for SIGTERM, SIGINT and SIGHUP alike: every loop waits on it, shutdown runs the same way. SIGHUP
    (a closed terminal, `systemctl kill -s HUP`, a habit of "reload") would otherwise end the process at once,
    without face_left, the last state or offline; edged has nothing to reload (settings are read once)."""
    stop = threading.Event()

    def stop_on(signum: int, frame: object) -> None:
        if not stop.is_set():  # one line, naming the signal: a stop that nobody asked for is then traceable
            logger.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop_on)
    return stop


def _run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not args.verbose:  # the daemon logs at EDGED_LOG_LEVEL; the other commands stay quiet
        logging.getLogger().setLevel(settings.log_level)
    from edged.discovery import discovery_for
    from edged.notify import Notifier
    from edged.outbox import Outbox
    from edged.pipeline import build
    from edged.publisher import MqttPublisher

    stop = _stop_on_signals()
    notifier = Notifier.from_env()  # systemd's NOTIFY_SOCKET and WATCHDOG_USEC; a no-op elsewhere
    box = settings.outbox
    # The outbox (and its lock) first: a second edged on this state directory stops before it loads the model or
    # opens a camera the first one is using.
    outbox = Outbox.open(settings.state_dir, max_messages=box.max_messages, max_bytes=int(box.max_mb * 1e6),
                         max_age_s=box.max_age_s)
    logger.info("outbox %s: %d events waiting from before", outbox.path, outbox.depth)

    def make_publisher(model_id: str) -> MqttPublisher:
        discovery = discovery_for(settings.homeassistant, settings.mqtt, settings.device_id, model_id, __version__)
        return MqttPublisher(settings.mqtt, settings.device_id, settings.mqtt_password, model_id, __version__,
                             outbox=outbox, inflight=box.inflight, discovery=discovery)

    if settings.stock_device_id_warning:
        logger.warning("%s", settings.stock_device_id_warning)
    try:
        pipeline = build(settings, make_publisher, stop, notifier)
    except BaseException:
        outbox.close()  # the publisher closes it once built
        raise
    logger.info("edged %s running as %s", __version__, settings.device_id)
    final = pipeline.run()
    logger.info("stopped after %d frames: %s", final["frames"], json.dumps(final))
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from edged.checks import run_checks

    status = EXIT_OK
    for check in run_checks(broker_timeout_s=None if args.skip_broker else args.timeout):
        print(f"{'WARN' if check.ok is None else 'PASS' if check.ok else 'FAIL'}  {check.name:<8} {check.detail}")
        if check.ok is False:
            status = EXIT_CONFIG if check.configuration or status == EXIT_CONFIG else EXIT_FAILED
    return status


def _config(args: argparse.Namespace) -> int:
    from edged.settings import describe

    settings = _settings(args)
    resolved = _resolved_files(settings)
    rows = [("VARIABLE", "VALUE", "DESCRIPTION"),
            *((name, value or resolved.get(name, ""), description) for name, value, description in describe(settings))]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for name, value, description in rows:
        print(f"{name:<{widths[0]}}  {value:<{widths[1]}}  {description}".rstrip())
    return EXIT_OK


def _resolved_files(settings) -> dict[str, str]:
    """What an empty EDGED_MODEL__PATH and EDGED_DETECTOR__CASCADE stand for: the files `run` would load."""
    from edged.models import default_model

    resolved = {}
    if settings.model.path is None:
        resolved["EDGED_MODEL__PATH"] = f"{default_model()} (bundled)"
    if settings.detector.cascade is None:
        try:
            from edged.detector import find_cascade

            resolved["EDGED_DETECTOR__CASCADE"] = f"{find_cascade()} (found)"
        except CascadeError as exc:
            resolved["EDGED_DETECTOR__CASCADE"] = f"(none: {exc})"
        except ModuleNotFoundError as exc:
            resolved["EDGED_DETECTOR__CASCADE"] = f"(none: {exc.name} is not installed)"
    return resolved


def _detect(args: argparse.Namespace) -> int:
    from edged.classifier import EmotionClassifier
    from edged.detector import HaarDetector

    settings = _settings(args)
    detector = HaarDetector(settings.detector)
    classifier = EmotionClassifier.from_settings(settings.model)
    status = EXIT_OK
    for image in args.images:
        gray, reason, damage = _read_image(image)
        if gray is None:
            print(f"edged: {image}: {reason}", file=sys.stderr)
            print(json.dumps({"image": str(image), "error": reason}), flush=True)
            status = EXIT_FAILED
            continue
        if damage:
            # Decoded in part (the rest is filled in): faces and emotions from it would be guesses.
            warning = f"damaged image, decoded only in part ({damage}); not classified"
            print(f"edged: {image}: {warning}", file=sys.stderr)
            print(json.dumps({"image": str(image), "width": gray.shape[1], "height": gray.shape[0], "faces": [],
                              "warning": warning}), flush=True)
            status = EXIT_FAILED
            continue
        boxes = detector.detect(gray)
        faces = []
        for box, scores in zip(boxes, classifier.classify(gray, boxes), strict=True):
            emotion = max(scores, key=scores.__getitem__)
            faces.append({"box": list(box), "emotion": emotion, "confidence": round(scores[emotion], 4),
                          "scores": {k: round(v, 4) for k, v in scores.items()}})
        print(json.dumps({"image": str(image), "width": gray.shape[1], "height": gray.shape[0], "faces": faces}),
              flush=True)
    return status


def _read_image(image: Path) -> tuple[object, str | None, str | None]:
    """(grayscale array or None, why it could not be read, what the decoder said about damage) for `edged detect`."""
    import cv2

    from edged.native import captured_stderr
    from edged.paths import why_unreadable

    reason = why_unreadable(image)
    if reason is not None:
        return None, reason, None
    # libjpeg says "Premature end of JPEG file" or "Corrupt JPEG data: ..." on stderr and fills in the rest.
    with captured_stderr() as decoder:
        gray = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        return None, "; ".join(["not an image OpenCV can read", *decoder]), None
    damage = "; ".join(decoder)
    with open(image, "rb") as file:
        head = file.read(2)
        file.seek(max(0, os.fstat(file.fileno()).st_size - 64))
        tail = file.read()
    if not damage and head == b"\xff\xd8" and b"\xff\xd9" not in tail:
        damage = "the JPEG data ends before its end marker"
    return gray, None, damage or None


def _bench(args: argparse.Namespace) -> int:
    from edged.bench import bench_settings, render, run_bench
    from edged.paths import why_unreadable

    reason = why_unreadable(args.video)
    if reason is not None:
        print(f"edged: bench: video file {args.video}: {reason}", file=sys.stderr)
        return 2
    if args.threads < 1:
        print(f"edged: bench: --threads must be at least 1, got {args.threads}", file=sys.stderr)
        return 2
    settings = bench_settings(args.video, args.threads, args.realtime)
    make_publisher = None
    if args.broker:
        from edged.names import check_host

        host, _, port = args.broker.rpartition(":")
        try:
            host = check_host(host.removeprefix("[").removesuffix("]"))  # [::1]:1883 is the usual IPv6 form here
        except ValueError:
            host = ""
        if not host or not port.isdigit():
            print(f"edged: bench: --broker must be HOST:PORT, got {args.broker!r}", file=sys.stderr)
            return 2
        from edged.publisher import MqttPublisher

        mqtt = settings.mqtt.model_copy(update={"host": host, "port": int(port)})
        make_publisher = lambda model_id: MqttPublisher(mqtt, settings.device_id, settings.mqtt_password,  # noqa: E731
                                                        model_id, __version__)
    result = run_bench(settings, make_publisher)
    print(json.dumps(result) if args.json else render(result), flush=True)
    return EXIT_OK


def _dashboard(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not args.verbose:
        logging.getLogger().setLevel(settings.log_level)
    try:
        from edged.dashboard.server import serve
    except ModuleNotFoundError as exc:
        raise ConfigError(f"the dashboard needs {exc.name}, which is not installed: install {DASHBOARD_EXTRA}") from None
    # uvicorn handles SIGTERM and SIGINT while it serves, then re-raises the signal: ours then only sets an event,
    # so the history's last seconds are written before the process exits (0, like `run`).
    _stop_on_signals()
    serve(settings)
    return EXIT_OK


def _watch(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console

    from edged.fleet import FleetView
    from edged.watch import render, watch, watch_once

    for flag in ("wait", "window", "stale", "interval"):
        if getattr(args, flag) <= 0:
            _parser().error(f"--{flag} must be positive")
    settings = _settings(args)
    view = FleetView(settings.mqtt.topic_prefix, window_s=args.window, stale_s=args.stale)
    if not args.once:
        watch(settings.mqtt, settings.mqtt_password, view, _stop_on_signals(), refresh_s=args.interval,
              as_json=args.json)
        return EXIT_OK
    watch_once(settings.mqtt, settings.mqtt_password, view, args.wait)
    now = time.time()
    if args.json:
        print(json.dumps(view.snapshot(now), indent=2))
    else:
        console = Console() if sys.stdout.isatty() else Console(width=132)  # a pipe or a log file: not 80 columns
        console.print(render(view, f"{settings.mqtt.host}:{settings.mqtt.port} {settings.mqtt.topic_prefix}/+/#", now))
    return EXIT_FAILED if view.alerts(now) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
