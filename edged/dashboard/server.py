"""`edged dashboard`: the history, the fleet feed and the web app, served by uvicorn until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import socket
import time

import uvicorn

from edged.dashboard.app import create_app
from edged.dashboard.history import History
from edged.dashboard.service import Dashboard
from edged.errors import ListenError
from edged.settings import Settings, env_name

logger = logging.getLogger(__name__)

DATABASE = "dashboard.sqlite3"


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; ListenError naming the variables when it cannot be had."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        # 69, not 78: the name may resolve once the network (or DNS) is up, and systemd retries on 69.
        raise ListenError(f"{env_name('dashboard', 'host')}={host} does not resolve ({exc.strerror or exc}): "
                          "cannot listen on it; give an address, or a name that resolves here") from None
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port} ({env_name('dashboard', 'host')}, "
                          f"{env_name('dashboard', 'port')}): {exc.strerror or exc}") from None
    return sock


def serve(settings: Settings) -> None:
    """Run the dashboard until a signal stops uvicorn. Raises ConfigError (the database's path is unusable) or
    ListenError (the address is, or the disk refuses the database)."""
    config = settings.dashboard
    if config.database is not None:
        history = History(config.database, config.retention_days * 86_400)
    else:
        where = (f"{env_name(None, 'state_dir')}={settings.state_dir} (the dashboard history goes there as {DATABASE} "
                 f"while {env_name('dashboard', 'database')} is empty)")
        history = History(settings.state_dir / DATABASE, config.retention_days * 86_400, where)
    history.flush(time.time())  # prunes what expired while the dashboard was stopped
    sock = listen(config.host, config.port)
    dashboard = Dashboard(config, settings.mqtt, settings.mqtt_password, history)
    logger.info("edged dashboard on http://%s:%d/ for %s/+/# at %s:%d", config.host if ":" not in config.host
                   else f"[{config.host}]", sock.getsockname()[1], settings.mqtt.topic_prefix, settings.mqtt.host,
                   settings.mqtt.port)
    server = uvicorn.Server(uvicorn.Config(
        create_app(dashboard), log_level="warning", access_log=False, lifespan="on",
        timeout_graceful_shutdown=2,  # live pages hold their streams open; close them instead of waiting
    ))
    with dashboard.running():
        server.run(sockets=[sock])
