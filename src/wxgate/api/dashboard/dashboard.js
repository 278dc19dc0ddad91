// wxgate operator dashboard. Plain JS, no build step, no library.
//
// Polls GET /v1/stats every second with the API key kept in sessionStorage and draws rates
// from the deltas of successive polls. Every value from the API reaches the page through
// textContent or setAttribute, never as HTML. Rows are kept by key and updated in place.
"use strict";

(() => {
  const KEY_STORE = "wxgate.dashboard.key";
  const POLL_MS = 1000;
  const WINDOW_MS = 5 * 60 * 1000; // the success ratio's span, and the chart's by default
  const HISTORY_MS = 60 * 60 * 1000; // the server's ring (GET /v1/stats/throughput)
  const RATE_SPAN_MS = 5000; // the KPI rates average over this much
  const GAP_MS = 6000; // a hole this long in the samples breaks the chart's line
  const BATCHES_EVERY_MS = 3000;
  const DEAD_MIN_MS = 2500; // dead letters reload at most this often when their count moves
  const DEAD_MAX_MS = 15000; // ... and at least this often anyway
  const DEAD_LIMIT = 100;
  const BATCH_LIMIT = 20;
  const MAX_APP_ROWS = 200;
  const OPEN_ENDED_S = 50 * 365 * 86400; // a pause by hand without an end (api/apps.py)
  const MAX_ERRCODES = 8;
  const REQUEST_TIMEOUT_MS = 10000;

  // Where the gateway's routes live: "" normally, "/prefix" behind a path-prefix proxy.
  const ROOT = location.pathname.replace(/\/dashboard\/?$/, "");

  const STATUSES = [
    "queued", "scheduled", "retrying", "sending", "sent", "delivered",
    "blocked", "failed", "dead", "expired", "cancelled",
  ];
  const WAITING = ["queued", "scheduled", "retrying"];
  const OK = ["sent", "delivered"];
  const FAILED = ["dead", "blocked", "failed", "expired"];
  const FINAL = new Set([...OK, ...FAILED, "cancelled"]);
  const GROUP = {
    queued: "wait", scheduled: "wait", retrying: "wait", sending: "wait",
    sent: "ok", delivered: "ok", blocked: "bad", failed: "bad", dead: "bad", expired: "bad",
  };

  // ------------------------------------------------------------------ small helpers

  const $ = (id) => document.getElementById(id);
  const nf = new Intl.NumberFormat("en-US");
  const fmtInt = (n) => nf.format(Math.round(Number(n) || 0));
  const sumOf = (counts, names) => names.reduce((acc, s) => acc + (Number(counts?.[s]) || 0), 0);

  function fmtRate(r) {
    if (r == null || !Number.isFinite(r)) return "–";
    if (r <= 0) return "0";
    if (r < 10) return r.toFixed(1);
    return fmtInt(r);
  }

  function fmtCompact(n) {
    if (n >= 1e6) return (n / 1e6).toFixed(n % 1e6 ? 1 : 0) + "M";
    if (n >= 1e3) return (n / 1e3).toFixed(n % 1e3 ? 1 : 0) + "k";
    return String(Math.round(n * 100) / 100);
  }

  function fmtRatio(ok, failed) {
    const total = ok + failed;
    if (total <= 0) return "–";
    if (failed <= 0) return "100%";
    return (Math.floor((ok / total) * 1000) / 10).toFixed(1) + "%"; // never rounds up to 100
  }

  function fmtDuration(s) {
    s = Math.max(0, s);
    if (s < 60) return Math.round(s) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  }

  function fmtAgo(epochS) {
    if (epochS == null) return "–";
    const d = Date.now() / 1000 - epochS;
    return d < 0 ? "in " + fmtDuration(-d) : fmtDuration(d) + " ago";
  }

  // Formatters are built once: toLocale*String builds one per call, the costliest thing here.
  const clockFmt = new Intl.DateTimeFormat([], {
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  });
  const minuteFmt = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit", hour12: false });
  const dateTimeFmt = new Intl.DateTimeFormat([], {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  });

  function fmtClock(epochS) {
    return epochS == null ? "–" : clockFmt.format(epochS * 1000);
  }

  function fmtDateTime(epochS) {
    return epochS == null ? "" : dateTimeFmt.format(epochS * 1000);
  }

  /** Build an element. Strings become text nodes (never HTML). */
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = String(v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids) if (kid != null) e.append(kid);
    return e;
  }

  function setText(e, v) {
    const s = String(v);
    if (e.textContent !== s) e.textContent = s;
  }

  function setClass(e, c) {
    if (e.className !== c) e.className = c;
  }

  function setAttr(e, name, v) {
    const s = String(v);
    if (e.getAttribute(name) !== s) e.setAttribute(name, s);
  }

  /** Rows of a tbody kept by key: created once, updated in place, reordered only if needed. */
  class Rows {
    constructor(tbody, make, update, cap) {
      this.tbody = tbody;
      this.make = make;
      this.update = update;
      this.cap = cap;
      this.rows = new Map();
    }

    sync(items, keyOf) {
      const seen = new Set();
      let prev = null;
      for (const item of items.slice(0, this.cap)) {
        const k = keyOf(item);
        if (seen.has(k)) continue;
        seen.add(k);
        let row = this.rows.get(k);
        if (!row) {
          row = this.make(item, k);
          this.rows.set(k, row);
        }
        this.update(row, item);
        const want = prev ? prev.tr.nextSibling : this.tbody.firstChild;
        if (want !== row.tr) this.tbody.insertBefore(row.tr, want);
        prev = row;
      }
      for (const [k, row] of this.rows) {
        if (!seen.has(k)) {
          row.tr.remove();
          this.rows.delete(k);
        }
      }
      return seen.size;
    }

    clear() {
      for (const row of this.rows.values()) row.tr.remove();
      this.rows.clear();
    }
  }

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  let key = sessionStorage.getItem(KEY_STORE) || "";
  let generation = 0; // bumped on sign-in/out: stale loops and answers see it and stop

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + key, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), REQUEST_TIMEOUT_MS);
    let resp;
    try {
      resp = await fetch(ROOT + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: ctrl.signal,
        cache: "no-store",
        credentials: "omit",
      });
    } catch (e) {
      throw new ApiError(0, e && e.name === "AbortError" ? "request timed out" : "gateway unreachable");
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    try {
      data = await resp.json();
    } catch {
      data = null;
    }
    if (!resp.ok) {
      const msg = data && typeof data.message === "string" ? data.message : `HTTP ${resp.status}`;
      if (resp.status === 401) signOut("The gateway no longer accepts this key.");
      throw new ApiError(resp.status, msg);
    }
    return data;
  }

  function explain(e, action) {
    if (e.status === 403) return `Not allowed to ${action}: ${e.message}`;
    return `Could not ${action}: ${e.message}`;
  }

  // ------------------------------------------------------------------ toast

  let toastTimer = 0;
  function toast(message, isError) {
    const t = $("toast");
    setText(t, message);
    setClass(t, isError ? "toast error" : "toast");
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, isError ? 6000 : 3500);
  }

  // ------------------------------------------------------------------ session

  function showLogin(message) {
    $("dash").hidden = true;
    $("session").hidden = true;
    $("login").hidden = false;
    setText($("login-error"), message || "");
    $("key-input").value = "";
    $("key-input").focus();
  }

  function signOut(message) {
    generation += 1;
    key = "";
    sessionStorage.removeItem(KEY_STORE);
    clearTimeout(pollTimer);
    resetState();
    showLogin(message);
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const candidate = $("key-input").value.trim();
    if (!candidate) return;
    const button = $("login-submit");
    button.disabled = true;
    setText($("login-error"), "");
    key = candidate;
    try {
      const stats = await api("GET", "/v1/stats");
      sessionStorage.setItem(KEY_STORE, candidate);
      start(stats);
    } catch (e) {
      key = "";
      let msg = e.message;
      if (e.status === 401) msg = "This key was not accepted.";
      else if (e.status === 403) msg = "This key lacks the read scope.";
      showLogin(msg);
    } finally {
      button.disabled = false;
    }
  });

  $("signout").addEventListener("click", () => signOut(""));

  function setLive(state, detail) {
    const live = $("live");
    setAttr(live, "data-state", state);
    setText($("live-text"), state === "live" ? "Live" : state === "error" ? "Reconnecting" : "Connecting…");
    live.title = detail || "";
  }

  // ------------------------------------------------------------------ polling

  let pollTimer = 0;
  let failures = 0;
  let samples = []; // {t (ms), ok, failed, apps: {app: ok}}
  let points = []; // chart points: {t, ok, failed} per second
  let stats = null;
  let lastBatchesAt = 0;
  let lastDeadAt = 0;
  let deadSeen = null; // the dead count when the dead letters were last loaded
  let deadLoading = false;
  let batchesLoading = false;

  function resetState() {
    samples = [];
    points = [];
    stats = null;
    lastBatchesAt = 0;
    lastDeadAt = 0;
    deadSeen = null;
    selected.clear();
    for (const r of [appRows, queueRows, errRows, batchRows, deadRows, msgRows]) r.clear();
    msgItems = [];
    chosenId = "";
    $("ms-detail").hidden = true;
    drawChart();
  }

  function start(first) {
    generation += 1;
    const gen = generation;
    resetState();
    $("login").hidden = true;
    $("dash").hidden = false;
    $("session").hidden = false;
    setLive("live");
    onStats(first);
    refreshBatches(gen);
    refreshDead(gen);
    loadHistory(gen);
    clearTimeout(pollTimer);
    pollTimer = setTimeout(() => poll(gen), POLL_MS);
  }

  async function poll(gen) {
    if (gen !== generation) return;
    const began = performance.now();
    try {
      const s = await api("GET", "/v1/stats");
      if (gen !== generation) return;
      failures = 0;
      setLive("live");
      onStats(s);
    } catch (e) {
      if (gen !== generation) return;
      failures += 1;
      setLive("error", e.message);
    }
    const now = Date.now();
    if (!failures && now - lastBatchesAt >= BATCHES_EVERY_MS) refreshBatches(gen);
    // Not while rows are ticked: the list must not move under the operator's hand.
    if (!failures && stats && selected.size === 0) {
      const dead = Number(stats.by_status?.dead) || 0;
      const since = now - lastDeadAt;
      if ((dead !== deadSeen && since >= DEAD_MIN_MS) || since >= DEAD_MAX_MS) refreshDead(gen);
    }
    const wait = failures
      ? Math.min(5000, 1000 * failures)
      : Math.max(200, POLL_MS - (performance.now() - began));
    pollTimer = setTimeout(() => poll(gen), wait);
  }

  function onStats(s) {
    stats = s;
    const t = Date.now();
    const finished = s.finished_by_app || {};
    let ok = 0;
    let failed = 0;
    const apps = {};
    for (const [app, counts] of Object.entries(finished)) {
      const a = sumOf(counts, OK);
      apps[app] = a;
      ok += a;
      failed += sumOf(counts, FAILED);
    }
    const prev = samples[samples.length - 1];
    samples.push({ t, ok, failed, apps });
    while (samples.length > 2 && samples[0].t < t - WINDOW_MS - 10000) samples.shift();
    if (prev) {
      const dt = (t - prev.t) / 1000;
      if (dt > 0) {
        points.push({
          t,
          ok: Math.max(0, (ok - prev.ok) / dt),
          failed: Math.max(0, (failed - prev.failed) / dt),
          gap: t - prev.t > GAP_MS,
        });
      }
    }
    while (points.length && points[0].t < t - HISTORY_MS) points.shift();

    renderKpis(s, ok, failed);
    renderApps(s);
    renderQueue(s);
    renderErrcodes(s);
    updateAppFilter(s);
    setText($("updated"), "Updated " + clockFmt.format(t));
    scheduleDraw();
  }

  /** Rate per second of `pick(sample)` over about RATE_SPAN_MS, or null before two samples. */
  function recentRate(pick) {
    if (samples.length < 2) return null;
    const last = samples[samples.length - 1];
    let ref = samples[samples.length - 2];
    for (let i = samples.length - 2; i >= 0; i--) {
      ref = samples[i];
      if (last.t - samples[i].t >= RATE_SPAN_MS) break;
    }
    const dt = (last.t - ref.t) / 1000;
    return dt > 0 ? Math.max(0, (pick(last) - pick(ref)) / dt) : null;
  }

  // ------------------------------------------------------------------ KPIs

  function renderKpis(s, ok, failed) {
    const by = s.by_status || {};
    const okRate = recentRate((x) => x.ok);
    const failedRate = recentRate((x) => x.failed);
    setText($("kpi-ok-rate"), fmtRate(okRate));
    setText($("kpi-failed-rate"), fmtRate(failedRate));
    setClass($("kpi-failed-rate"), failedRate > 0 ? "kpi-value bad" : "kpi-value");
    setText($("legend-ok"), fmtRate(okRate));
    setText($("legend-failed"), fmtRate(failedRate));
    setText($("kpi-ok-total"), fmtInt(ok));
    setText($("kpi-failed-total"), fmtInt(failed));
    setText($("kpi-ratio"), fmtRatio(ok, failed));
    const total = ok + failed;
    const ratioClass = total && ok / total < 0.95 ? (ok / total < 0.8 ? " bad" : " warn") : "";
    setClass($("kpi-ratio"), "kpi-value" + ratioClass);
    if (samples.length >= 2) {
      const first = samples[0];
      const last = samples[samples.length - 1];
      setText($("kpi-ratio-window"), fmtRatio(
        Math.max(0, last.ok - first.ok), Math.max(0, last.failed - first.failed)));
    }
    setText($("kpi-depth"), fmtInt(s.queue_depth));
    setText($("kpi-oldest"), s.oldest_pending_at == null ? "none" : fmtAgo(s.oldest_pending_at));
    setText($("kpi-suppressed"), fmtInt(Object.values(s.suppressed || {}).reduce((a, n) => a + n, 0)));
    setText($("kpi-sending"), fmtInt(by.sending));
    setText($("kpi-retrying"), fmtInt(by.retrying));
    setText($("kpi-dead"), fmtInt(by.dead));
    setClass($("kpi-dead"), Number(by.dead) > 0 ? "kpi-value warn" : "kpi-value");
  }

  // ------------------------------------------------------------------ apps

  function appNames(s) {
    const names = new Set([
      ...Object.keys(s.delivery?.apps || {}),
      ...Object.keys(s.by_app || {}),
      ...Object.keys(s.finished_by_app || {}),
      ...(s.pauses || []).map((p) => p.app),
    ]);
    return [...names].sort();
  }

  const appRows = new Rows($("apps").tBodies[0], (_item, name) => {
    const c = {
      name: h("td", { class: "id", text: name }),
      badge: h("span", { class: "badge" }),
      detail: h("span", { class: "state-detail" }),
      breaker: h("span", { class: "badge" }),
      rate: h("td", { class: "num" }),
      limit: h("td", { class: "num" }),
      inflight: h("td", { class: "num" }),
      waiting: h("td", { class: "num" }),
      dead: h("td", { class: "num" }),
      toggle: h("button", { type: "button", class: "btn btn-sm", "data-app-action": "pause" }),
    };
    c.tr = h("tr", { "data-app": name }, c.name, h("td", null, c.badge, c.detail),
      h("td", null, c.breaker), c.rate, c.limit, c.inflight, c.waiting, c.dead,
      h("td", null, h("div", { class: "actions" }, c.toggle)));
    c.toggle.addEventListener("click", () => appAction(name, c.toggle.dataset.appAction, c.toggle));
    return c;
  }, (c, item) => {
    const { name, s } = item;
    const d = s.delivery?.apps?.[name];
    const counts = s.by_app?.[name] || {};
    const nowS = Date.now() / 1000;
    const pause = (s.pauses || []).find((p) => p.app === name && p.until > nowS);
    let badge = ["Running", "badge ok"];
    let detail = "";
    if (pause) {
      badge = ["Paused", "badge warn"];
      const why = pause.reason + (pause.errcode != null ? ` (errcode ${pause.errcode})` : "");
      // A pause by hand without an end is stored a century ahead: say so instead of a date.
      const until = pause.until - nowS > OPEN_ENDED_S
        ? "until resumed"
        : `until ${fmtClock(pause.until)} (${fmtAgo(pause.until)})`;
      detail = `${until} · ${why}` + (pause.by ? ` · by ${pause.by}` : "");
    } else if (d && d.paused_until && d.paused_until > nowS) {
      badge = ["Paused", "badge warn"];
      detail = `until ${fmtClock(d.paused_until)} · ${d.pause_reason || "paused"}`;
    } else if (d && d.breaker === "open") {
      badge = ["Breaker open", "badge bad"];
      detail = d.opened_until ? `retries at ${fmtClock(d.opened_until)}` : "";
    } else if (d && d.breaker === "half_open") {
      badge = ["Probing", "badge warn"];
      detail = "breaker half-open: trial sends";
    } else if (!d) {
      badge = ["No workers here", "badge"];
    }
    setText(c.badge, badge[0]);
    setClass(c.badge, badge[1]);
    setText(c.detail, detail);
    c.detail.hidden = !detail;
    const breaker = d ? String(d.breaker || "closed") : "–";
    setText(c.breaker, breaker.replace("_", "-"));
    setClass(c.breaker, breaker === "open" ? "badge bad" : breaker === "half_open" ? "badge warn" : "badge");
    setText(c.rate, fmtRate(recentRate((x) => x.apps[name] || 0)));
    setText(c.limit, d && d.rate_per_s != null ? fmtInt(d.rate_per_s) + "/s" : "–");
    setText(c.inflight, d ? fmtInt(d.in_flight) : "–");
    setText(c.waiting, fmtInt(sumOf(counts, WAITING)));
    setText(c.dead, fmtInt(counts.dead));
    const paused = badge[0] === "Paused";
    setText(c.toggle, paused ? "Resume" : "Pause");
    c.toggle.dataset.appAction = paused ? "resume" : "pause";
    setAttr(c.toggle, "aria-label", (paused ? "Resume app " : "Pause app ") + name);
  }, MAX_APP_ROWS);

  // Pause by hand (asks why: the reason is logged and shown to everyone) or resume: ends
  // any pause, the gateway's own quota or config pauses too. Needs a key with admin scope.
  async function appAction(name, action, button) {
    let body;
    if (action === "pause") {
      const reason = prompt(`Pause app ${name}: why? (shown to everyone and logged)`);
      if (reason === null || !reason.trim()) return;
      body = { reason: reason.trim() };
    }
    const gen = generation;
    button.disabled = true;
    try {
      await api("POST", `/v1/apps/${encodeURIComponent(name)}/${action}`, body);
      if (gen !== generation) return;
      toast(`App ${name} ${action === "pause" ? "paused" : "resumed"}.`);
      const s = await api("GET", "/v1/stats");
      if (gen === generation) onStats(s);
    } catch (e) {
      if (gen === generation) toast(explain(e, `${action} the app`), true);
    } finally {
      button.disabled = false;
    }
  }

  function renderApps(s) {
    const names = appNames(s);
    appRows.sync(names.map((name) => ({ name, s })), (x) => x.name);
    setText($("apps-note"), s.delivery
      ? "breaker, rate limit and in-flight of the process that answered"
      : "this process runs no workers: breaker, rate and in-flight are not known here");
  }

  // ------------------------------------------------------------------ queue by status

  (function buildQueueHead() {
    const head = $("queue").tHead.rows[0];
    head.append(h("th", { scope: "col", text: "App" }));
    for (const st of STATUSES) {
      const g = GROUP[st];
      head.append(h("th", { scope: "col", class: "num" + (g ? " group-" + g : ""), text: st }));
    }
    head.append(h("th", { scope: "col", class: "num", text: "total" }));
    const foot = $("queue").tFoot.rows[0];
    foot.append(h("td", { text: "All apps" }));
    for (const st of STATUSES) foot.append(h("td", { class: "num", "data-status": st, "data-app": "*" }));
    foot.append(h("td", { class: "num", "data-status": "total", "data-app": "*" }));
  })();

  function fillCount(td, n) {
    setText(td, fmtInt(n));
    setClass(td, n ? "num" : "num zero");
  }

  const queueRows = new Rows($("queue").tBodies[0], (_item, name) => {
    const c = { cells: {} };
    c.tr = h("tr", { "data-app": name }, h("td", { class: "id", text: name }));
    for (const st of [...STATUSES, "total"]) {
      c.cells[st] = h("td", { class: "num", "data-status": st, "data-app": name });
      c.tr.append(c.cells[st]);
    }
    return c;
  }, (c, item) => {
    let total = 0;
    for (const st of STATUSES) {
      const n = Number(item.counts[st]) || 0;
      total += n;
      fillCount(c.cells[st], n);
    }
    fillCount(c.cells.total, total);
  }, MAX_APP_ROWS);

  function renderQueue(s) {
    const apps = Object.keys(s.by_app || {}).sort();
    queueRows.sync(apps.map((name) => ({ name, counts: s.by_app[name] })), (x) => x.name);
    const foot = $("queue").tFoot.rows[0];
    let total = 0;
    for (const td of foot.querySelectorAll("td[data-status]")) {
      const st = td.getAttribute("data-status");
      if (st === "total") continue;
      const n = Number(s.by_status?.[st]) || 0;
      total += n;
      fillCount(td, n);
    }
    fillCount(foot.querySelector('td[data-status="total"]'), total);
  }

  // ------------------------------------------------------------------ errcodes

  const DISPOSITION_CLASS = {
    drop: "badge bad", config: "badge bad", throttle: "badge warn", retry: "badge info",
  };

  const errRows = new Rows($("errcodes").tBodies[0], (_item, code) => {
    const c = {
      disp: h("span", { class: "badge" }),
      meaning: h("div"),
      count: h("span"),
      bar: h("div", { class: "errcode-bar" }),
    };
    c.tr = h("tr", { "data-errcode": code },
      h("td", { class: "id", text: code }),
      h("td", null, c.meaning, h("div", { class: "errcode-meaning" }, c.disp)),
      h("td", { class: "num" }, c.count, c.bar));
    return c;
  }, (c, item) => {
    setText(c.meaning, item.meaning);
    setText(c.disp, item.disposition);
    setClass(c.disp, DISPOSITION_CLASS[item.disposition] || "badge");
    setAttr(c.disp, "title", `the gateway's disposition: ${item.disposition}`);
    setText(c.count, fmtInt(item.count));
    c.bar.style.width = Math.max(4, (100 * item.count) / item.max) + "%";
  }, MAX_ERRCODES);

  function renderErrcodes(s) {
    const list = Array.isArray(s.top_errcodes) ? s.top_errcodes : [];
    const max = list.reduce((m, x) => Math.max(m, x.count), 1);
    const n = errRows.sync(list.map((x) => ({ ...x, max })), (x) => String(x.errcode));
    setText($("errcodes-empty"), s.delivery
      ? "No failed sends."
      : "This process runs no workers: errcodes are counted where messages are sent.");
    $("errcodes-empty").hidden = n > 0;
    $("errcodes").hidden = n === 0;
  }

  // ------------------------------------------------------------------ batches

  const PAST = { pause: "paused", resume: "resumed", cancel: "cancelled" };
  const BATCH_BADGE = {
    running: "badge info", loading: "badge info", paused: "badge warn", incomplete: "badge warn",
    done: "badge ok",
  };

  async function batchAction(id, action, button) {
    if (action === "cancel" && !confirm(`Cancel batch ${id}? Its messages not sent yet are cancelled; this cannot be undone.`)) return;
    const gen = generation;
    button.disabled = true;
    try {
      const progress = await api("POST", `/v1/batches/${encodeURIComponent(id)}/${action}`);
      if (gen !== generation) return;
      const row = batchRows.rows.get(id);
      if (row) batchRows.update(row, progress);
      toast(`Batch ${id} ${PAST[action]}.`);
    } catch (e) {
      if (gen === generation) toast(explain(e, `${action} the batch`), true);
    } finally {
      button.disabled = false;
      refreshBatches(gen);
    }
  }

  const batchRows = new Rows($("batches").tBodies[0], (_item, id) => {
    const c = {
      id: h("td", { class: "id", text: id, title: id }),
      app: h("td", { class: "id" }),
      template: h("td", { class: "truncate" }),
      created: h("td", { class: "muted" }),
      ok: h("span", { class: "p-ok" }),
      bad: h("span", { class: "p-bad" }),
      cancel: h("span", { class: "p-cancel" }),
      active: h("span", { class: "p-active" }),
      done: h("span"),
      pct: h("span"),
      status: h("span", { class: "badge" }),
      toggle: h("button", { type: "button", class: "btn btn-sm" }),
      stop: h("button", { type: "button", class: "btn btn-sm btn-danger", text: "Cancel" }),
    };
    const bar = h("div", { class: "progress" }, c.ok, c.bad, c.cancel, c.active);
    c.tr = h("tr", { "data-batch": id }, c.id, c.app, c.template, c.created,
      h("td", null, bar, h("div", { class: "progress-text" }, c.done, c.pct)),
      h("td", null, c.status),
      h("td", null, h("div", { class: "actions" }, c.toggle, c.stop)));
    c.toggle.addEventListener("click", () => batchAction(id, c.toggle.dataset.action, c.toggle));
    c.stop.addEventListener("click", () => batchAction(id, "cancel", c.stop));
    return c;
  }, (c, b) => {
    const counts = b.counts || {};
    const total = Math.max(1, Number(b.total) || 0);
    const ok = sumOf(counts, OK);
    const bad = sumOf(counts, FAILED);
    const cancelled = Number(counts.cancelled) || 0;
    const active = Number(counts.sending) || 0;
    let done = 0;
    for (const [st, n] of Object.entries(counts)) if (FINAL.has(st)) done += Number(n) || 0;
    const pct = (n) => (100 * n) / total + "%";
    c.ok.style.width = pct(ok);
    c.bad.style.width = pct(bad);
    c.cancel.style.width = pct(cancelled);
    c.active.style.width = pct(active);
    setText(c.app, b.app || "–");
    setText(c.template, b.template_id || "–");
    setAttr(c.template, "title", b.template_id || "");
    setText(c.created, b.created_at ? fmtAgo(b.created_at) : "–");
    setAttr(c.created, "title", fmtDateTime(b.created_at));
    setText(c.done, `${fmtInt(done)} / ${fmtInt(b.total)} done` + (bad ? ` · ${fmtInt(bad)} failed` : ""));
    const codes = Object.entries(b.errcodes || {}).map(([code, n]) => `errcode ${code}: ${fmtInt(n)}`);
    setAttr(c.done, "title", codes.length ? "dead letters by errcode: " + codes.join(", ") : "");
    setText(c.pct, Math.floor((100 * done) / total) + "%");
    setText(c.status, b.status);
    setClass(c.status, BATCH_BADGE[b.status] || "badge");
    // paused, or incomplete (its upload broke): resume; loading (being uploaded): cancel only.
    const held = b.status === "paused" || b.status === "incomplete";
    const final = b.status === "done" || b.status === "cancelled";
    setText(c.toggle, held ? "Resume" : "Pause");
    c.toggle.dataset.action = held ? "resume" : "pause";
    c.toggle.hidden = final || b.status === "loading";
    c.stop.hidden = final;
  }, BATCH_LIMIT);

  async function refreshBatches(gen) {
    if (batchesLoading) return;
    batchesLoading = true;
    lastBatchesAt = Date.now();
    try {
      const page = await api("GET", `/v1/batches?limit=${BATCH_LIMIT}`);
      if (gen !== generation) return;
      // Active ones first: they are what the buttons are for. Newest first within each group.
      const items = page.items || [];
      const active = (b) => (b.status === "done" || b.status === "cancelled" ? 1 : 0);
      items.sort((a, b) => active(a) - active(b));
      const n = batchRows.sync(items, (b) => b.id);
      $("batches-empty").hidden = n > 0;
      $("batches").hidden = n === 0;
    } catch (e) {
      if (gen === generation && e.status !== 401) setText($("batches-empty"), "Batches unavailable: " + e.message);
    } finally {
      batchesLoading = false;
    }
  }

  // ------------------------------------------------------------------ dead letters

  const selected = new Set();
  const filters = { app: "", errcode: "" };

  const deadRows = new Rows($("deadletters").tBodies[0], (m, id) => {
    const c = {
      check: h("input", { type: "checkbox", "aria-label": "Select " + id }),
      app: h("td", { class: "id" }),
      kind: h("td", { class: "id" }),
      touser: h("td", { class: "id truncate" }),
      errcode: h("td", { class: "id" }),
      errmsg: h("td", { class: "truncate" }),
      attempts: h("td", { class: "num" }),
      died: h("td", { class: "muted" }),
    };
    c.tr = h("tr", { "data-id": id }, h("td", { class: "check" }, c.check),
      h("td", { class: "id", text: id }), c.app, c.kind, c.touser, c.errcode, c.errmsg, c.attempts, c.died);
    c.check.addEventListener("change", () => {
      if (c.check.checked) selected.add(id);
      else selected.delete(id);
      updateSelection();
    });
    return c;
  }, (c, m) => {
    setText(c.app, m.app);
    setText(c.kind, m.kind || "template");
    setText(c.touser, m.touser);
    setText(c.errcode, m.last_errcode ?? "–");
    setText(c.errmsg, m.last_errmsg || "");
    setAttr(c.errmsg, "title", m.last_errmsg || "");
    setText(c.attempts, fmtInt(m.attempts));
    setText(c.died, m.finished_at ? fmtAgo(m.finished_at) : "–");
    setAttr(c.died, "title", fmtDateTime(m.finished_at));
    c.check.checked = selected.has(m.id);
  }, DEAD_LIMIT);

  function updateSelection() {
    for (const id of [...selected]) if (!deadRows.rows.has(id)) selected.delete(id);
    const n = selected.size;
    const button = $("dl-requeue-selected");
    button.disabled = n === 0;
    setText(button, n ? `Requeue selected (${n})` : "Requeue selected");
    const all = $("dl-all");
    all.checked = n > 0 && n === deadRows.rows.size;
    all.indeterminate = n > 0 && n < deadRows.rows.size;
    const filtered = Boolean(filters.app || filters.errcode !== "");
    const bulk = $("dl-requeue-all");
    bulk.disabled = !filtered || deadRows.rows.size === 0;
    bulk.title = filtered ? "" : "Pick an app or an errcode first";
  }

  async function refreshDead(gen) {
    if (deadLoading) return;
    deadLoading = true;
    lastDeadAt = Date.now();
    const seen = Number(stats?.by_status?.dead) || 0;
    const q = new URLSearchParams({ limit: String(DEAD_LIMIT) });
    if (filters.app) q.set("app", filters.app);
    if (filters.errcode !== "") q.set("errcode", filters.errcode);
    try {
      const page = await api("GET", "/v1/dead-letters?" + q.toString());
      if (gen !== generation) return;
      deadSeen = seen;
      const n = deadRows.sync(page.items || [], (m) => m.id);
      $("dl-empty").hidden = n > 0;
      $("deadletters").hidden = n === 0;
      setText($("dl-footer"), n === 0 ? "" : `Showing the ${fmtInt(n)} newest` +
        (page.next_cursor ? "; more match (requeue all matching covers them too)." : "."));
      updateSelection();
    } catch (e) {
      if (gen === generation && e.status !== 401) toast(explain(e, "load dead letters"), true);
    } finally {
      deadLoading = false;
    }
  }

  function updateAppFilter(s) {
    for (const select of [$("dl-app"), $("ms-app")]) {
      const have = new Set([...select.options].map((o) => o.value));
      for (const name of Object.keys(s.delivery?.apps || s.by_app || {}).sort()) {
        if (!have.has(name)) select.append(h("option", { value: name, text: name }));
      }
    }
  }

  $("dl-filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const code = $("dl-errcode").value.trim();
    if (code !== "" && !/^-?\d+$/.test(code)) {
      toast("The errcode must be a whole number.", true);
      return;
    }
    filters.app = $("dl-app").value;
    filters.errcode = code;
    selected.clear();
    deadRows.clear();
    refreshDead(generation);
  });

  $("dl-all").addEventListener("change", () => {
    const on = $("dl-all").checked;
    for (const [id, row] of deadRows.rows) {
      row.check.checked = on;
      if (on) selected.add(id);
      else selected.delete(id);
    }
    updateSelection();
  });

  async function requeue(body, what) {
    const gen = generation;
    try {
      const out = await api("POST", "/v1/dead-letters/requeue", body);
      if (gen !== generation) return;
      toast(`Requeued ${fmtInt(out.requeued)} ${what}.`);
      selected.clear();
    } catch (e) {
      if (gen === generation) toast(explain(e, "requeue"), true);
    } finally {
      lastDeadAt = 0;
      lastBatchesAt = 0; // requeued messages count in their batches again
      if (gen === generation) refreshDead(gen);
    }
  }

  $("dl-requeue-selected").addEventListener("click", () => {
    const ids = [...selected];
    if (ids.length) requeue({ ids }, ids.length === 1 ? "dead letter" : "dead letters");
  });

  $("dl-requeue-all").addEventListener("click", () => {
    const body = {};
    const parts = [];
    if (filters.app) {
      body.app = filters.app;
      parts.push(`app ${filters.app}`);
    }
    if (filters.errcode !== "") {
      body.errcode = Number(filters.errcode);
      parts.push(`errcode ${filters.errcode}`);
    }
    if (!parts.length) return;
    if (!confirm(`Requeue every dead letter of ${parts.join(" and ")}?`)) return;
    requeue(body, "dead letters");
  });

  // ------------------------------------------------------------------ messages

  // GET /v1/messages looks at a bounded number of messages per page, so a page of a rare
  // filter may come back short with a cursor: ask on (at most MSG_CALLS pages per click)
  // until MSG_LIMIT are shown or there are no more.
  const MSG_LIMIT = 50;
  const MSG_CALLS = 10;
  const PENDING = new Set(["queued", "scheduled", "retrying"]);
  const msgQuery = { params: null, cursor: null };
  let chosenId = "";

  for (const st of STATUSES) $("ms-status").append(h("option", { value: st, text: st }));

  const badgeOf = (st) => "badge " + ({ ok: "ok", bad: "bad", wait: "info" }[GROUP[st]] || "");

  const msgRows = new Rows($("messages").tBodies[0], (_m, id) => {
    const c = {
      app: h("td", { class: "id" }),
      touser: h("td", { class: "id truncate" }),
      status: h("span"),
      attempts: h("td", { class: "num" }),
      error: h("td", { class: "truncate" }),
      created: h("td", { class: "muted" }),
    };
    c.tr = h("tr", { "data-id": id, tabindex: "0" }, h("td", { class: "id", text: id }),
      c.app, c.touser, h("td", null, c.status), c.attempts, c.error, c.created);
    c.tr.addEventListener("click", () => showMessage(id));
    c.tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") showMessage(id); });
    return c;
  }, (c, m) => {
    setText(c.app, m.app);
    setText(c.touser, m.touser);
    setText(c.status, m.status);
    setClass(c.status, badgeOf(m.status));
    setText(c.attempts, fmtInt(m.attempts));
    const err = m.last_errcode == null ? "" : `${m.last_errcode} ${m.last_errcode_meaning || ""}`;
    setText(c.error, err);
    setAttr(c.error, "title", m.last_errmsg || "");
    setText(c.created, fmtDateTime(m.created_at));
    setClass(c.tr, m.id === chosenId ? "chosen" : "");
  }, 100000);
  let msgItems = [];

  async function searchMessages(more) {
    const gen = generation;
    if (!more) {
      msgItems = [];
      msgQuery.cursor = null;
    }
    let calls = 0;
    const wanted = msgItems.length + MSG_LIMIT;
    try {
      do {
        const q = new URLSearchParams(msgQuery.params);
        q.set("limit", String(wanted - msgItems.length));
        if (msgQuery.cursor) q.set("cursor", msgQuery.cursor);
        const page = await api("GET", "/v1/messages?" + q.toString());
        if (gen !== generation) return;
        msgItems = msgItems.concat(page.items || []);
        msgQuery.cursor = page.next_cursor || null;
        calls += 1;
      } while (msgQuery.cursor && calls < MSG_CALLS && msgItems.length < wanted);
    } catch (e) {
      if (gen === generation && e.status !== 401) toast(explain(e, "search messages"), true);
    }
    const n = msgRows.sync(msgItems, (m) => m.id);
    $("messages").hidden = n === 0;
    $("ms-empty").hidden = n > 0;
    setText($("ms-empty"), "No messages match.");
    $("ms-more").hidden = !msgQuery.cursor;
  }

  $("ms-filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const params = {};
    for (const [name, id] of [["touser", "ms-touser"], ["status", "ms-status"], ["app", "ms-app"], ["batch", "ms-batch"]]) {
      const v = $(id).value.trim();
      if (v) params[name] = v;
    }
    msgQuery.params = params;
    msgRows.clear();
    searchMessages(false);
  });
  $("ms-more").addEventListener("click", () => searchMessages(true));
  $("md-close").addEventListener("click", () => {
    chosenId = "";
    $("ms-detail").hidden = true;
    msgRows.sync(msgItems, (m) => m.id);
  });

  /** The stored timestamps in order: what the message went through, as far as it is kept. */
  function historyOf(m) {
    const steps = [[m.created_at, m.not_before > m.created_at + 0.5 ? "accepted, scheduled" : "accepted, queued"]];
    if (m.not_before > m.created_at + 0.5) steps.push([m.not_before, PENDING.has(m.status) ? "due" : "became due"]);
    if (m.sent_at != null) steps.push([m.sent_at, "sent to WeChat" + (m.wechat_msgid != null ? ` (msgid ${m.wechat_msgid})` : "")]);
    if (m.finished_at != null && m.status !== "sent") {
      let what = m.status;
      if (m.receipt) what += ` (receipt: ${m.receipt})`;
      else if (m.last_errcode != null) what += ` (errcode ${m.last_errcode}: ${m.last_errcode_meaning || ""})`;
      steps.push([m.finished_at, what]);
    } else if (!FINAL.has(m.status)) {
      const why = m.last_errcode != null ? ` after errcode ${m.last_errcode}: ${m.last_errcode_meaning || ""}` : "";
      steps.push([m.updated_at ?? m.created_at, `now ${m.status}` + (m.attempts ? `, ${m.attempts} attempt(s)` : "") + why]);
    }
    return steps.sort((a, b) => a[0] - b[0]);
  }

  async function showMessage(id) {
    const gen = generation;
    let m;
    try {
      m = await api("GET", "/v1/messages/" + encodeURIComponent(id));
    } catch (e) {
      if (gen === generation && e.status !== 401) toast(explain(e, "load the message"), true);
      return;
    }
    if (gen !== generation) return;
    chosenId = id;
    msgItems = msgItems.map((x) => (x.id === id ? m : x));
    msgRows.sync(msgItems, (x) => x.id);
    setText($("md-id"), m.id);
    const facts = $("md-facts");
    facts.replaceChildren();
    const fact = (name, value) => {
      if (value == null || value === "") return;
      facts.append(h("dt", { text: name }), h("dd", { "data-fact": name, text: value }));
    };
    fact("Status", m.status);
    fact("App", m.app);
    fact("To user", m.touser);
    fact("Template", m.template_id);
    fact("Batch", m.batch_id);
    fact("Idempotency key", m.idempotency_key);
    fact("Attempts", String(m.attempts));
    fact("Redrive rounds", m.redrive_rounds ? String(m.redrive_rounds) : null);
    if (m.last_errcode != null) {
      fact("Last errcode", `${m.last_errcode}: ${m.last_errcode_meaning || ""}`);
      fact("Last errmsg", m.last_errmsg);
    }
    fact("WeChat msgid", m.wechat_msgid == null ? null : String(m.wechat_msgid));
    fact("Receipt", m.receipt);
    fact("Expires", m.expire_at == null ? null : fmtDateTime(m.expire_at));
    fact("Notes", (m.notes || []).join("; "));
    const list = $("md-history");
    list.replaceChildren(...historyOf(m).map(([t, what]) =>
      h("li", null, h("span", { class: "muted", text: fmtDateTime(t) + " " }), what)));
    $("md-cancel").hidden = !PENDING.has(m.status);
    $("ms-detail").hidden = false;
  }

  $("md-cancel").addEventListener("click", async () => {
    const id = chosenId;
    if (!id || !confirm(`Cancel message ${id}?`)) return;
    try {
      await api("DELETE", "/v1/messages/" + encodeURIComponent(id));
      toast(`Cancelled ${id}.`);
    } catch (e) {
      toast(explain(e, "cancel"), true);
    }
    showMessage(id);
  });

  // ------------------------------------------------------------------ chart

  // The chart's history: the server's ring of per-second counts (every process adds to it),
  // loaded at sign-in and on a reload, so the chart starts with the last hour rather than
  // empty. Live points (deltas of /v1/stats polls) continue it.
  let chartMs = WINDOW_MS;

  async function loadHistory(gen) {
    const since = Math.floor((Date.now() - HISTORY_MS) / 1000);
    let body;
    try {
      body = await api("GET", `/v1/stats/throughput?since=${since}`);
    } catch (e) {
      if (gen === generation && e.status !== 401) toast(explain(e, "load the chart's history"), true);
      return;
    }
    if (gen !== generation) return;
    const kinds = body.kinds || [];
    const iSent = kinds.indexOf("sent") + 1;
    const iFailed = kinds.indexOf("failed") + 1;
    const bySecond = new Map((body.seconds || []).map((r) => [r[0], r]));
    const hist = [];
    let sent = 0;
    // Every second from the first counted one to the current one (counted so far); missing
    // ones are 0. The ring wins over live points sampled meanwhile (a poll can answer before
    // the history does): those from before the current second are dropped, not the ring's.
    const first = body.seconds && body.seconds.length ? body.seconds[0][0] : body.now;
    for (let sec = first; sec <= body.now; sec += 1) {
      const t = (sec + 1) * 1000; // a second's count is known at its end
      const r = bySecond.get(sec);
      const ok = r ? Number(r[iSent]) || 0 : 0;
      sent += ok;
      hist.push({ t, ok, failed: r ? Number(r[iFailed]) || 0 : 0, gap: false });
    }
    const end = body.now * 1000;
    points = hist.concat(points.filter((p) => p.t > end)).sort((a, b) => a.t - b.t);
    const chart = $("chart");
    setAttr(chart, "data-history-points", hist.length);
    setAttr(chart, "data-history-sent", sent);
    scheduleDraw();
  }

  $("chart-window").addEventListener("change", () => {
    chartMs = Number($("chart-window").value) * 1000;
    setText($("chart-window-label"), chartMs > WINDOW_MS ? "· last hour" : "· last 5 min");
    scheduleDraw();
  });

  let drawPending = false;
  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => {
      drawPending = false;
      drawChart();
    });
  }

  function niceStep(raw) {
    const exp = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= raw) return m * exp;
    return 10 * exp;
  }

  function drawChart() {
    const canvas = $("chart");
    const box = canvas.parentElement;
    const w = box.clientWidth;
    const ht = box.clientHeight;
    if (!w || !ht) return;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(ht * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(ht * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, ht);
    const css = getComputedStyle(document.documentElement);
    const color = (name) => css.getPropertyValue(name).trim();
    const pad = { l: 48, r: 10, t: 10, b: 24 };
    const pw = w - pad.l - pad.r;
    const ph = ht - pad.t - pad.b;
    const now = Date.now();
    const x0 = now - chartMs;
    const xOf = (t) => pad.l + ((t - x0) / chartMs) * pw;

    let max = 0;
    for (const p of points) if (p.t >= x0) max = Math.max(max, p.ok, p.failed);
    const ticks = 4;
    const step = max <= ticks ? 1 : niceStep(max / ticks);
    const yMax = step * Math.max(ticks, Math.ceil(max / step));
    const yOf = (v) => pad.t + ph - (v / yMax) * ph;

    ctx.font = `11px ${color("--font") || "sans-serif"}`;
    ctx.lineWidth = 1;
    ctx.strokeStyle = color("--grid");
    ctx.fillStyle = color("--muted");
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let v = 0; v <= yMax + 1e-9; v += step) {
      const y = Math.round(yOf(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.l, y);
      ctx.lineTo(w - pad.r, y);
      ctx.stroke();
      ctx.fillText(fmtCompact(v), pad.l - 8, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const minute = chartMs > 10 * 60000 ? 10 * 60000 : 60000; // a gridline per tick
    for (let t = Math.ceil(x0 / minute) * minute; t <= now; t += minute) {
      const x = Math.round(xOf(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, pad.t);
      ctx.lineTo(x, pad.t + ph);
      ctx.stroke();
      const label = minuteFmt.format(t);
      ctx.fillText(label, Math.min(Math.max(x, pad.l + 16), w - pad.r - 16), pad.t + ph + 6);
    }

    if (points.length < 2) {
      ctx.fillStyle = color("--muted");
      ctx.textBaseline = "middle";
      ctx.font = `13px ${color("--font") || "sans-serif"}`;
      ctx.fillText("Collecting samples…", pad.l + pw / 2, pad.t + ph / 2);
      return;
    }

    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.l, pad.t - 2, pw, ph + 4);
    ctx.clip();
    // Delivered: filled area under the line, one run per stretch without a gap.
    const runs = [];
    let run = [];
    for (const p of points) {
      if (p.gap && run.length) {
        runs.push(run);
        run = [];
      }
      run.push(p);
    }
    if (run.length) runs.push(run);
    const base = yOf(0);
    ctx.fillStyle = color("--ok-soft");
    for (const r of runs) {
      if (r.length < 2) continue;
      ctx.beginPath();
      ctx.moveTo(xOf(r[0].t), base);
      for (const p of r) ctx.lineTo(xOf(p.t), yOf(p.ok));
      ctx.lineTo(xOf(r[r.length - 1].t), base);
      ctx.closePath();
      ctx.fill();
    }
    const line = (pick, stroke) => {
      ctx.strokeStyle = stroke;
      ctx.lineWidth = 2;
      ctx.lineJoin = "round";
      for (const r of runs) {
        ctx.beginPath();
        r.forEach((p, i) => (i ? ctx.lineTo(xOf(p.t), yOf(pick(p))) : ctx.moveTo(xOf(p.t), yOf(pick(p)))));
        ctx.stroke();
      }
    };
    line((p) => p.failed, color("--bad"));
    line((p) => p.ok, color("--ok"));
    ctx.restore();
  }

  if (typeof ResizeObserver === "function") {
    new ResizeObserver(() => scheduleDraw()).observe($("chart").parentElement);
  }
  // Keep relative times ("3 s ago") and the chart's time axis moving between polls too.
  setInterval(() => { if (stats) scheduleDraw(); }, 1000);

  // ------------------------------------------------------------------ boot

  if (key) {
    const gen = ++generation;
    api("GET", "/v1/stats")
      .then((s) => { if (gen === generation) start(s); })
      .catch((e) => { if (gen === generation) showLogin(e.status === 401 ? "" : e.message); });
  } else {
    showLogin("");
  }
})();
