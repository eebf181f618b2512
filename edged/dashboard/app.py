"""The dashboard's web side: a Starlette app with a page and a JSON endpoint for each view, live updates as
Server-Sent Events, and Prometheus metrics.

    /                      fleet overview                 /api/fleet                 the same as JSON
    /kiosk/{device}        one kiosk: charts, events      /api/devices/{device}      the same as JSON
    /trend?group=<prefix>  the fleet's emotion mix        /api/history?device=|group=&range=hour|day
    /api/live              Server-Sent Events: the fleet, then what changed, every EDGED_DASHBOARD__PUSH_INTERVAL_S
    /metrics               Prometheus text format         /static/...                our JS and CSS, uPlot
    /favicon.ico           204: no icon

Pages are Jinja templates with autoescape on; the page script writes MQTT strings with textContent only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from edged import __version__
from edged.dashboard.auth import Guard
from edged.dashboard.metrics import exposition
from edged.dashboard.service import Dashboard

HERE = Path(__file__).resolve().parent
RANGES = {"hour": (3600, 60), "day": (86_400, 900)}  # span, bucket (seconds)
NO_STORE = {"Cache-Control": "no-store"}


def create_app(dashboard: Dashboard) -> Starlette:
    """The ASGI app over `dashboard` (whose feed the caller runs), guarded as its settings say."""
    templates = Jinja2Templates(directory=HERE / "templates")  # autoescape is on for .html
    templates.env.globals.update(version=__version__, prefix=dashboard.view.prefix)

    def page(request: Request, name: str, **context: object) -> Response:
        return templates.TemplateResponse(request, name, context, headers=NO_STORE)

    async def overview(request: Request) -> Response:
        return page(request, "overview.html", title="fleet")

    async def kiosk(request: Request) -> Response:
        device = request.path_params["device"]
        return page(request, "kiosk.html", title=device, device=device, known=dashboard.knows(device))

    async def trend(request: Request) -> Response:
        group = request.query_params.get("group", "")
        return page(request, "trend.html", title=f"trend {group}*" if group else "trend", group=group)

    async def api_fleet(request: Request) -> Response:
        return JSONResponse(dashboard.overview(time.time()), headers=NO_STORE)

    async def api_device(request: Request) -> Response:
        found = dashboard.device(request.path_params["device"], time.time())
        if found is None:
            return JSONResponse({"error": "no such device"}, 404)
        return JSONResponse(found, headers=NO_STORE)

    def api_history(request: Request) -> Response:  # sync: Starlette runs it in a thread (SQLite)
        chosen = request.query_params.get("range", "hour")
        if chosen not in RANGES:
            return JSONResponse({"error": f"range must be one of {', '.join(RANGES)}"}, 400)
        span, bucket = RANGES[chosen]
        device = request.query_params.get("device")
        if device is not None and not dashboard.knows(device):  # as /api/devices/<device>: not an empty history
            return JSONResponse({"error": "no such device"}, 404)
        group = request.query_params.get("group", "")
        series = dashboard.history.series(time.time(), span, bucket, device=device, group=group)
        covered = [device] if device is not None else dashboard.devices_in(group)  # what the trend page names
        return JSONResponse({"range": chosen, "device": device, "devices": covered, **series}, headers=NO_STORE)

    async def live(request: Request) -> Response:
        queue = dashboard.listen()

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n"
                while True:
                    try:
                        data = await asyncio.wait_for(queue.get(), 15)
                    except TimeoutError:
                        yield ": keep-alive\n\n"  # a comment: proxies and the page see the stream is alive
                        continue
                    if data is None:
                        return
                    yield f"data: {data}\n\n"
            finally:
                dashboard.forget(queue)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={**NO_STORE, "X-Accel-Buffering": "no"})

    async def favicon(request: Request) -> Response:
        # The pages say they have no icon (<link rel=icon href="data:,">); /metrics and the JSON, opened in a
        # browser, still ask for one: no content, rather than a 404 in every console.
        return Response(status_code=204, headers={"Cache-Control": "max-age=86400"})

    async def metrics(request: Request) -> Response:
        return Response(await asyncio.to_thread(exposition, dashboard), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        pusher = asyncio.create_task(dashboard.push(stop))
        try:
            yield
        finally:
            stop.set()
            await pusher

    routes = [
        Route("/", overview),
        Route("/kiosk/{device}", kiosk),
        Route("/trend", trend),
        Route("/api/fleet", api_fleet),
        Route("/api/devices/{device}", api_device),
        Route("/api/history", api_history),
        Route("/api/live", live),
        Route("/metrics", metrics),
        Route("/favicon.ico", favicon),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Guard, settings=dashboard.settings)], lifespan=lifespan)
