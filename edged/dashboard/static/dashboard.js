// edged dashboard: live pages over /api/live (Server-Sent Events) and charts with the vendored uPlot.
// Every string from MQTT (device ids, alert details, emotions) is written with textContent, never as HTML.
"use strict";
(function () {
  const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
  const COLOURS = { angry: "#d93025", disgust: "#188038", fear: "#9334e6", happy: "#f9ab00", sad: "#1a73e8",
                    surprise: "#e8710a", neutral: "#80868b" };
  const SEVERITY = { offline: 0, stale: 1, unknown: 2, online: 3 };
  const body = document.body;
  const page = body.dataset.page;
  const range = new URLSearchParams(location.search).get("range") === "day" ? "day" : "hour";
  // What tests and the benchmark read: the latest update, the charts, the table rows.
  const state = (window.edged = { updates: 0, lastUpdate: null, charts: {}, rows: new Map(), renderMs: [] });
  state.format = { ago: (s) => ago(s), plural: (n, one, many) => plural(n, one, many) };

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function num(value, digits) { return value === null || value === undefined ? "-" : Number(value).toFixed(digits); }
  function plural(n, one, many) { return n + " " + (n === 1 ? one : many); }
  // One way to say an age on every page, the rule of edged.fleet.duration (which writes the alerts' ages).
  function duration(seconds) {
    seconds = Math.max(0, seconds);
    if (seconds < 90) return seconds.toFixed(0) + " s";
    if (seconds < 5400) return (seconds / 60).toFixed(0) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }
  function ago(seconds) { return seconds === null || seconds === undefined ? "-" : duration(seconds) + " ago"; }
  // Times are this browser's local time everywhere (charts, events, ages), 24-hour, with the zone said once per page.
  const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  function two(n) { return String(n).padStart(2, "0"); }
  function clock(iso) {
    const t = new Date(iso);
    return isNaN(t) ? "-" : two(t.getHours()) + ":" + two(t.getMinutes()) + ":" + two(t.getSeconds());
  }
  function zoneNote() {
    const minutes = -new Date().getTimezoneOffset();
    const offset = (minutes < 0 ? "-" : "+") + two(Math.floor(Math.abs(minutes) / 60)) + ":" + two(Math.abs(minutes) % 60);
    const said = ZONE === "UTC" || ZONE === "Etc/UTC" ? "times in UTC" : "times in " + ZONE + " (UTC" + offset + ")";
    for (const span of document.querySelectorAll(".zone")) span.textContent = said;
  }
  function mix(shares) {
    return Object.entries(shares || {}).slice(0, 3).map(([e, s]) => e + " " + Math.round(s * 100) + "%").join(" ") || "-";
  }
  function show(id, text) {
    const banner = document.getElementById(id);
    banner.hidden = !text;
    if (text) banner.textContent = text;
  }

  // ---- the live connection, and the banners saying when it or the broker is down
  let serverSkew = 0; // server clock minus this browser's, from the latest update
  let heard = 0;
  function connect(onUpdate) {
    const source = new EventSource("/api/live");
    source.onopen = () => { heard = Date.now(); };
    source.onerror = () => show("banner-page", "no live connection to the dashboard: retrying (what you see may be old)");
    source.onmessage = (message) => {
      heard = Date.now();
      show("banner-page", "");
      const update = JSON.parse(message.data);
      serverSkew = update.now - Date.now() / 1000;
      show("banner-broker", update.broker.connected ? "" : "the dashboard has no connection to the MQTT broker: " + update.broker.detail);
      const summary = document.getElementById("fleet-summary");
      summary.textContent = plural(update.fleet.devices, "kiosk", "kiosks") + ", " + update.fleet.online + " online, " +
        plural(update.fleet.faces, "face", "faces") + " in view" + (update.rejected ? ", " + plural(update.rejected, "bad message", "bad messages") : "");
      const started = performance.now();
      onUpdate(update);
      state.renderMs.push(performance.now() - started);
      if (state.renderMs.length > 1000) state.renderMs.shift();
      state.updates += 1;
      state.lastUpdate = update;
    };
    // A stream that went quiet (a proxy holding it, a suspended laptop) is a lost one too: updates come every second or less.
    setInterval(() => { if (heard && Date.now() - heard > 10000) show("banner-page", "no update from the dashboard for " + duration((Date.now() - heard) / 1000) + ": retrying"); }, 2000);
  }
  function serverNow() { return Date.now() / 1000 + serverSkew; }
  // Between full updates a device comes with only the fields of its row that changed (of `seq`, only the topics whose
  // counters moved): laid over what the page has.
  function merged(row, changes, full) {
    if (full || !row) return changes;
    const next = Object.assign({}, row, changes);
    if (changes.seq) next.seq = Object.assign({}, row.seq, changes.seq);
    return next;
  }

  // ---- the fleet overview
  const COLUMNS = [
    ["device", (n, r) => n], ["health", (n, r) => SEVERITY[r.health] ?? 9], ["seen", (n, r) => r.last_seen_utc === null ? Infinity : -r.last_seen_utc],
    ["fps", (n, r) => r.fps ?? -1], ["faces", (n, r) => r.faces ?? -1], ["camera", (n, r) => r.camera_ok === null ? 2 : Number(r.camera_ok)],
    ["outbox", (n, r) => r.outbox_depth ?? -1], ["lost", (n, r) => r.seq.events.lost], ["resets", (n, r) => r.seq.events.resets],
    ["bad", (n, r) => -r.malformed], ["mix", (n, r) => mix(r.emotion_mix)], ["alerts", (n, r) => -r.alerts.length],
  ];
  let sortKey = "health", sortDir = 1, lastAlerts = null, ticking = null;

  // Only what changed is written: with a thousand rows updated every half second, untouched cells cost nothing.
  function put(cell, text, cls) {
    text = String(text);
    if (cell.textContent !== text) cell.textContent = text;
    if (cls !== undefined && cell.className !== cls) cell.className = cls;
  }
  function fillRow(tr, name, row) {
    const cells = tr.cells;
    put(cells[1], row.health, row.health);
    put(cells[2], row.last_seen_utc === null ? "-" : ago(serverNow() - row.last_seen_utc));
    put(cells[3], num(row.fps, 1));
    put(cells[4], row.faces ?? "-");
    put(cells[5], row.camera_ok === null ? "-" : row.camera_ok ? "ok" : "lost", row.camera_ok === false ? "bad" : "");
    put(cells[6], row.outbox_depth ?? "-");
    put(cells[7], row.seq.events.lost, "num" + (row.seq.events.lost ? " bad" : ""));
    put(cells[8], row.seq.events.resets);
    put(cells[9], row.malformed, "num malformed" + (row.malformed ? " bad" : ""));
    if (cells[9].title !== (row.last_malformed || "")) cells[9].title = row.last_malformed || "";
    put(cells[10], mix(row.emotion_mix));
    put(cells[11], row.alerts.map((a) => a.kind).join(" ") || "-", row.alerts.length ? "bad" : "");
  }
  function newRow(name) {
    const tr = el("tr");
    const first = el("td", "device");
    const link = el("a", null, name);
    link.href = "/kiosk/" + encodeURIComponent(name);
    first.appendChild(link);
    tr.appendChild(first);
    for (const cls of ["", "num", "num", "num", "", "num outbox", "num", "num resets", "num malformed", "mix", ""]) tr.appendChild(el("td", cls));
    // On a phone each row is a card (dashboard.css): every cell shows its column's name beside its value.
    const labels = [...document.querySelectorAll("#devices thead th")].map((th) => th.textContent);
    [...tr.cells].forEach((td, i) => { td.dataset.label = labels[i]; });
    tr.dataset.device = name;
    return tr;
  }
  function sortRows(tbody) {
    const key = COLUMNS.find(([k]) => k === sortKey)[1];
    const entries = [...state.rows.entries()].map(([name, item]) => [key(name, item.row), name, item.tr]);
    entries.sort((a, b) => (a[0] < b[0] ? -sortDir : a[0] > b[0] ? sortDir : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    // Rows are moved only when the order changed: moving a thousand rows makes the browser lay the table out anew.
    const rows = tbody.children;
    if (rows.length !== entries.length || entries.some(([, , tr], i) => rows[i] !== tr)) {
      const fragment = document.createDocumentFragment();
      for (const [, , tr] of entries) fragment.appendChild(tr);
      tbody.appendChild(fragment);
    }
    for (const th of document.querySelectorAll("#devices th")) {
      th.classList.toggle("sorted-asc", th.dataset.key === sortKey && sortDir === 1);
      th.classList.toggle("sorted-desc", th.dataset.key === sortKey && sortDir === -1);
    }
  }
  function overview() {
    const tbody = document.querySelector("#devices tbody");
    for (const th of document.querySelectorAll("#devices th[data-key]")) {
      th.addEventListener("click", () => {
        sortDir = sortKey === th.dataset.key ? -sortDir : 1;
        sortKey = th.dataset.key;
        sortRows(tbody);
      });
    }
    connect((update) => {
      let added = false;
      if (update.full) {
        for (const [name, item] of state.rows) if (!(name in update.devices)) { item.tr.remove(); state.rows.delete(name); }
      }
      for (const [name, row] of Object.entries(update.devices)) {
        let item = state.rows.get(name);
        if (!item) { item = { tr: newRow(name) }; state.rows.set(name, item); added = true; }
        item.row = merged(item.row, row, update.full);
        fillRow(item.tr, name, item.row);
      }
      if (added || update.full) sortRows(tbody);
      if (!ticking) {  // "last seen" grows between updates too, as the alerts' ages do: every row's, every second
        ticking = setInterval(() => {
          for (const item of state.rows.values()) {
            if (item.row.last_seen_utc !== null) put(item.tr.cells[2], ago(serverNow() - item.row.last_seen_utc));
          }
        }, 1000);
      }
      document.getElementById("device-count").textContent = "(" + state.rows.size + ")";
      if (!update.alerts) return; // unchanged since the last update
      const shown = JSON.stringify(update.alerts.slice(0, 200)) + update.alerts.length;
      if (shown === lastAlerts) return;
      lastAlerts = shown;
      const list = document.getElementById("alerts");
      list.replaceChildren();
      for (const alert of update.alerts.slice(0, 200)) {
        const li = el("li");
        li.appendChild(el("span", "kind", alert.kind));
        if (alert.device !== "-") li.appendChild(el("span", "who", alert.device + ": "));  // "-": the fleet's (no_devices)
        li.appendChild(el("span", "detail", alert.detail));
        list.appendChild(li);
      }
      if (update.alerts.length > 200) list.appendChild(el("li", "hint", "and " + (update.alerts.length - 200) + " more"));
      document.getElementById("alert-count").textContent = update.alerts.length ? "(" + update.alerts.length + ")" : "(none)";
    });
  }

  // ---- charts (uPlot); the emotion chart is stacked: each series is drawn as the running sum, its legend shows its own count.
  // Every scale a series is drawn on has its own labelled axis, and counts, faces and fps start at 0: autoscaled, a
  // mean of 0.72-0.75 faces fills the whole height and looks like a swing.
  function fromZero(u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; }
  const COUNTS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];  // whole numbers only
  function yAxis(scale, label, extra) { return { scale, label, size: 50, labelSize: 20, ...extra }; }
  function chart(id, series, data, axes, scales) {
    const box = document.getElementById(id);
    const options = { width: Math.max(300, box.clientWidth), height: 240, series: [{}, ...series],
                      fmtDate: (tpl) => uPlot.fmtDate(tpl.replace("{h}", "{HH}").replace("{aa}", "")),  // 24-hour, as the events
                      scales: { x: { time: true }, ...scales }, axes: [{}, ...axes] };
    const plot = new uPlot(options, data, box);
    window.addEventListener("resize", () => plot.setSize({ width: Math.max(300, box.clientWidth), height: 240 }));
    return plot;
  }
  // A bucket with no sample at all is null in every emotion (nothing heard is not zero faces): a gap in every layer.
  // A value with no neighbour draws no line (linear: none on either side; stepped, which holds a value until the next
  // one: none after it), and uPlot leaves point markers out on a dense chart (the day's 96 buckets): such a value was
  // invisible, a lone bucket of data an empty chart. Markers go exactly there, a filled dot, on every chart and range.
  function lonePoints(stepped, colour) {
    const given = (v) => v !== null && v !== undefined;
    return { show: false, size: 7, fill: colour, filter: (u, si) => {
      const values = u.data[si], lone = [];
      for (let i = 0; i < values.length; i++) {
        if (!given(values[i])) continue;
        const after = given(values[i + 1]), before = i > 0 && given(values[i - 1]);
        if (stepped ? !after : !(before || after)) lone.push(i);
      }
      return lone.length ? lone : null;
    } };
  }
  function stacked(history) {
    const running = history.t.map(() => 0);
    const layers = EMOTIONS.map((e) => history.emotions[e].map((v, i) => (v === null ? null : (running[i] += v))));
    return [history.t, ...layers.reverse()];  // the top of the stack first, so the smaller layers paint over it
  }
  function emotionChart(history) {
    const raw = EMOTIONS.slice().reverse().map((e) => history.emotions[e]);
    const series = EMOTIONS.slice().reverse().map((e, k) => ({
      label: e, stroke: COLOURS[e], fill: COLOURS[e], width: 1, paths: uPlot.paths.stepped({ align: 1 }), points: lonePoints(true, COLOURS[e]),
      value: (u, v, si, i) => (i === null || i === undefined ? "-" : String(state.emotionRaw[k][i] ?? "-")),
    }));
    state.emotionRaw = raw;
    if (!state.charts.emotions) {
      state.charts.emotions = chart("chart-emotions", series, stacked(history),
                                    [yAxis("y", "faces per bucket", { incrs: COUNTS })], { y: { range: fromZero } });
    }
    else state.charts.emotions.setData(stacked(history));
    state.emotionEvents = raw.flat().reduce((a, b) => a + (b ?? 0), 0);
  }
  function lineChart(name, id, series, data, axes, scales) {
    if (!state.charts[name]) state.charts[name] = chart(id, series, data, axes, scales);
    else state.charts[name].setData(data);
  }
  function facesChart(history) {
    lineChart("faces", "chart-faces", [{ label: "faces", stroke: "#1a73e8", width: 2, spanGaps: false, points: lonePoints(false, "#1a73e8") }],
              [history.t, history.faces], [yAxis("y", "faces in view")], { y: { range: fromZero } });
  }
  // fps on the left; the camera on its own axis on the right, down (0) to up (1): a bucket's share of stats saying up.
  function fpsChart(history) {
    const camera = { grid: { show: false }, side: 1, size: 56, splits: () => [0, 1],
                     values: (u, splits) => splits.map((v) => (v === 1 ? "up" : v === 0 ? "down" : "")) };
    lineChart("fps", "chart-fps",
              [{ label: "fps", stroke: "#188038", width: 2, scale: "fps", points: lonePoints(false, "#188038") },
               { label: "camera up", stroke: "#d93025", width: 2, scale: "camera", points: lonePoints(false, "#d93025"),
                 value: (u, v) => (v === null || v === undefined ? "-" : Math.round(v * 100) + "% of the time") }],
              [history.t, history.fps, history.camera_ok],
              [yAxis("fps", "fps"), yAxis("camera", "camera", camera)],
              { fps: { range: fromZero }, camera: { range: () => [-0.05, 1.05] } });
  }
  function markRange() {
    zoneNote();
    for (const a of document.querySelectorAll(".ranges a")) a.classList.toggle("chosen", a.dataset.range === range);
  }
  function throttled(fn, ms) {
    let timer = null, last = 0;
    return () => {
      if (timer) return;
      const wait = Math.max(0, last + ms - Date.now());
      timer = setTimeout(() => { timer = null; last = Date.now(); fn(); }, wait);
    };
  }

  // ---- one kiosk
  function kiosk() {
    const device = body.dataset.device;
    markRange();
    const name = encodeURIComponent(device);
    async function refresh() {
      const [info, history] = await Promise.all([
        fetch("/api/devices/" + name).then((r) => (r.ok ? r.json() : null)),
        fetch("/api/history?range=" + range + "&device=" + name).then((r) => (r.ok ? r.json() : r.status)),
      ]);
      // 404: a kiosk the dashboard has never seen has no history (the page says so); the charts come with its first message.
      state.historyStatus = typeof history === "number" ? history : 200;
      if (typeof history === "object") {
        emotionChart(history);
        facesChart(history);
        fpsChart(history);
      }
      if (info) {
        const tbody = document.querySelector("#events tbody");
        tbody.replaceChildren();
        for (const e of info.events) {
          const tr = el("tr");
          const emotion = e.previous_emotion ? e.previous_emotion + " → " + e.emotion : e.emotion;
          for (const text of [clock(e.ts), e.type, e.track, emotion, e.seq]) tr.appendChild(el("td", null, text));
          tbody.appendChild(tr);
        }
      }
    }
    const later = throttled(refresh, 1000);
    let seen = null;
    refresh();
    let row = null;
    connect((update) => {
      if (!update.devices[device]) return;
      const unseen = document.getElementById("unseen");
      if (unseen) unseen.hidden = true;
      row = merged(row, update.devices[device], update.full);
      const facts = document.getElementById("facts");
      facts.replaceChildren();
      const items = [["status", row.health], ["last seen", row.last_seen_utc === null ? "-" : ago(update.now - row.last_seen_utc)],
                     ["fps", num(row.fps, 1)], ["faces", row.faces ?? "-"], ["emotions now", row.emotions_now.join(" ") || "-"],
                     ["camera", row.camera_ok === null ? "-" : row.camera_ok ? "ok" : "lost"], ["outbox", row.outbox_depth ?? "-"],
                     ["events lost", row.seq.events.lost], ["seq resets", row.seq.events.resets],
                     ["bad messages", row.malformed ? row.malformed + " (latest: " + row.last_malformed + ")" : 0],
                     ["alerts", row.alerts.map((a) => a.detail).join("; ") || "none"]];
      for (const [label, value] of items) {
        const div = el("div");
        div.appendChild(el("dt", null, label));
        div.appendChild(el("dd", label === "status" ? row.health : null, value));
        facts.appendChild(div);
      }
      const mark = [row.seq.events.last, row.seq.state.last, row.seq.stats.last].join("/");
      if (mark !== seen) { seen = mark; later(); }
    });
  }

  // ---- the fleet's trend (all kiosks, or those whose id starts with a prefix)
  const NAMED = 12;  // a group of up to this many kiosks is named, each a link to its page; a bigger one is counted
  function covers(ids) {
    const said = document.getElementById("covers"), prefix = body.dataset.group || "";
    said.replaceChildren();
    said.classList.toggle("none", !ids.length);
    if (!ids.length) {
      said.textContent = (prefix ? "No kiosk's id starts with \u201c" + prefix + "\u201d" : "No kiosk seen yet") +
        ": the charts stay empty until one is heard from (the fleet page lists every kiosk the dashboard knows).";
      return;
    }
    said.append((prefix ? "" : "the whole fleet: ") + plural(ids.length, "kiosk", "kiosks") + (ids.length <= NAMED ? ": " : " (the fleet page lists them)"));
    if (ids.length > NAMED) return;
    ids.forEach((id, k) => {
      const link = el("a", null, id);
      link.href = "/kiosk/" + encodeURIComponent(id);
      said.append(...(k ? [", ", link] : [link]));
    });
  }
  function trend() {
    markRange();
    const group = encodeURIComponent(body.dataset.group || "");
    async function refresh() {
      const history = await fetch("/api/history?range=" + range + "&group=" + group).then((r) => r.json());
      covers(history.devices);
      emotionChart(history);
      facesChart(history);
    }
    const later = throttled(refresh, 5000);
    refresh();
    connect(() => later());
  }

  if (page === "overview") overview();
  else if (page === "kiosk") kiosk();
  else if (page === "trend") trend();
})();
