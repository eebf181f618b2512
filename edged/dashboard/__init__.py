"""`edged dashboard`, the central web dashboard: the optional extra `edged[dashboard]`; the kiosk daemon never
imports it.

    history.py   per-minute aggregates in SQLite, pruned after EDGED_DASHBOARD__RETENTION_DAYS
    service.py   the fleet (edged.fleet via edged.watch's MQTT feed), its history and the live updates
    app.py       the Starlette app: pages, JSON API, Server-Sent Events, /metrics
    auth.py      read-only, and token or basic auth when configured
    metrics.py   the Prometheus collector
    server.py    uvicorn on EDGED_DASHBOARD__HOST:PORT
"""
