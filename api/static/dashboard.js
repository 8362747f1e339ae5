// Ops dashboard of the customer-portrait API. Plain JS, no dependencies: every chart is SVG drawn here.
// The page holds no data of its own; it asks for a bearer token (kept in sessionStorage only) and
// calls the JSON endpoints with it. The live alert feed uses EventSource, which cannot send headers,
// so /v1/alerts/stream takes the token as ?token=.
"use strict";

(() => {
  const TOKEN_KEY = "portraits.dashboard.token";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  const FEED_LIMIT = 200;
  const OVERVIEW_EVERY_MS = 15000;

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let source = null;
  let overviewTimer = null;
  let reconnectTimer = null;
  const seenAlerts = new Set();

  // -- small helpers --------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) node.setAttribute(k, v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const isNum = (x) => typeof x === "number" && Number.isFinite(x);
  function fmt(x, digits = 2) {
    if (x === null || x === undefined) return "—";
    if (isNum(x)) return Number.isInteger(x) ? x.toLocaleString("en-US") : x.toLocaleString("en-US", { maximumFractionDigits: digits });
    if (typeof x === "boolean") return x ? "yes" : "no";
    if (typeof x === "object") return JSON.stringify(x);
    return String(x);
  }
  const pct = (x) => (isNum(x) ? `${(x * 100).toFixed(1)}%` : "—");
  const money = (x) => (isNum(x) ? x.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) : "—");
  function when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function say(text, kind = "error") {
    const box = $("message");
    box.textContent = text || "";
    box.className = `message ${kind === "info" ? "info" : ""}`;
    box.hidden = !text;
  }

  function status(id, state, text) {
    const badge = $(id);
    badge.dataset.state = state;
    badge.textContent = text;
  }

  class HttpError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function api(path) {
    if (!token) throw new HttpError(401, "enter an API token first");
    const response = await fetch(path, { headers: { Authorization: `Bearer ${token}`, Accept: "application/json" } });
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = await response.json();
        if (body && body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      } catch (_) { /* not JSON */ }
      throw new HttpError(response.status, detail);
    }
    return response.json();
  }

  // -- charts ---------------------------------------------------------------------------------

  function empty(target, text) {
    target.replaceChildren(el("div", { class: "empty", text }));
  }

  // Hour x weekday heatmap. The portraits keep hours and weekdays as separate counts, so the
  // cells are hours[h] * weekdays[d] / total (the joint counts if hour and weekday were
  // independent); the margins show the real sums.
  function heatmap(target, hours, weekdays) {
    const total = (hours || []).reduce((a, b) => a + b, 0);
    if (!total) return empty(target, "no activity yet");
    const cw = 22, ch = 18, left = 34, top = 16, right = 44;
    const width = left + 24 * cw + right, height = top + 7 * ch + 22;
    const cells = WEEKDAYS.map((_, d) => hours.map((h) => (h * (weekdays[d] || 0)) / total));
    const max = Math.max(...cells.flat(), 1e-9);
    const dayMax = Math.max(...weekdays, 1);
    const hourMax = Math.max(...hours, 1);
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "activity heatmap by weekday and hour" });
    for (let h = 0; h < 24; h += 1) {
      if (h % 3 === 0) root.append(svg("text", { x: left + h * cw + cw / 2, y: top - 5, "text-anchor": "middle" }, String(h).padStart(2, "0")));
      // hour margin: a bar under the grid
      const barH = Math.max(1, (hours[h] / hourMax) * 16);
      root.append(svg("rect", { x: left + h * cw + 2, y: top + 7 * ch + 20 - barH, width: cw - 4, height: barH, fill: "#9db6e8" },
        svg("title", {}, `${String(h).padStart(2, "0")}:00 — ${fmt(hours[h])} events`)));
    }
    WEEKDAYS.forEach((name, d) => {
      root.append(svg("text", { x: left - 6, y: top + d * ch + ch / 2 + 3, "text-anchor": "end" }, name));
      cells[d].forEach((value, h) => {
        const t = value / max;
        root.append(svg("rect", {
          x: left + h * cw + 1, y: top + d * ch + 1, width: cw - 2, height: ch - 2, rx: 2,
          fill: `rgb(${Math.round(236 - 189 * t)}, ${Math.round(242 - 131 * t)}, ${Math.round(253 - 31 * t)})`,
        }, svg("title", {}, `${name} ${String(h).padStart(2, "0")}:00 ≈ ${value.toFixed(1)} events`)));
      });
      // weekday margin: a bar right of the grid
      const barW = Math.max(1, ((weekdays[d] || 0) / dayMax) * (right - 8));
      root.append(svg("rect", { x: left + 24 * cw + 6, y: top + d * ch + 3, width: barW, height: ch - 6, fill: "#9db6e8" },
        svg("title", {}, `${name} — ${fmt(weekdays[d])} events`)));
    });
    target.replaceChildren(root);
  }

  // Horizontal bars: rows of {label, value, text}.
  function bars(target, rows, { color = "#2f6fde", labelWidth = 110 } = {}) {
    if (!rows.length) return empty(target, "nothing yet");
    const rowH = 20, width = 420, barMax = width - labelWidth - 90;
    const max = Math.max(...rows.map((r) => r.value), 1e-9);
    const root = svg("svg", { viewBox: `0 0 ${width} ${rows.length * rowH + 4}`, role: "img" });
    rows.forEach((row, i) => {
      const y = i * rowH + 2;
      root.append(svg("text", { x: labelWidth - 6, y: y + 13, "text-anchor": "end" }, row.label));
      root.append(svg("rect", { x: labelWidth, y: y + 3, width: Math.max(1, (row.value / max) * barMax), height: rowH - 7, rx: 2, fill: row.color || color },
        svg("title", {}, `${row.label}: ${row.text}`)));
      root.append(svg("text", { class: "v", x: labelWidth + Math.max(1, (row.value / max) * barMax) + 5, y: y + 13 }, row.text));
    });
    target.replaceChildren(root);
  }

  // Vertical bars with labels under them.
  function columns(target, values, labels, { color = "#2f6fde", width = 420 } = {}) {
    if (!values.length || !values.some((v) => v > 0)) return empty(target, "nothing yet");
    const height = 140, bottom = 18, top = 12;
    const w = width / values.length, max = Math.max(...values, 1e-9);
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
    values.forEach((v, i) => {
      const h = (v / max) * (height - bottom - top);
      root.append(svg("rect", { x: i * w + 3, y: height - bottom - h, width: w - 6, height: Math.max(h, 0.5), rx: 2, fill: color },
        svg("title", {}, `${labels[i]}: ${fmt(v)}`)));
      if (v > 0) root.append(svg("text", { class: "v", x: i * w + w / 2, y: height - bottom - h - 2, "text-anchor": "middle" }, fmt(v)));
      root.append(svg("text", { x: i * w + w / 2, y: height - 5, "text-anchor": "middle" }, labels[i]));
    });
    target.replaceChildren(root);
  }

  const LAYER_COLORS = { high_value: "#1f9d55", potential: "#2f6fde", ordinary: "#8a94a6", low_value: "#d97706" };

  // -- overview -------------------------------------------------------------------------------

  function kpi(label, value, field) {
    return el("div", { class: "kpi" }, el("div", { class: "label", text: label }), el("div", { class: "value", "data-field": field, text: value }));
  }

  function renderOverview(o) {
    const churn = o.churn || {};
    const rep = o.repurchase || {};
    $("overview-kpis").replaceChildren(
      kpi("users", fmt(o.users), "overview.users"),
      kpi("mobile share", pct(o.mobile_share), "overview.mobile_share"),
      kpi("peak hour", o.activity && o.activity.peak_hour !== null ? `${String(o.activity.peak_hour).padStart(2, "0")}:00` : "—", "overview.peak_hour"),
      kpi("repurchase 30d", pct(rep.rate), "overview.repurchase"),
      kpi("users scored", fmt(churn.users_scored), "overview.users_scored"),
      kpi("mean churn risk", isNum(churn.mean_risk) ? churn.mean_risk.toFixed(3) : "—", "overview.mean_risk"),
    );
    const activity = o.activity || {};
    heatmap($("chart-heatmap"), activity.hours || [], activity.weekdays || []);
    $("heatmap-note").textContent = "cells estimated from the hour and weekday totals (bars)";
    bars($("chart-layers"), (o.value_layers || []).map((l) => ({
      label: l.layer, value: l.users, color: LAYER_COLORS[l.layer], text: `${fmt(l.users)} · ${pct(l.gmv_30d_share)}`,
    })));
    bars($("chart-segments"), (o.segments || []).map((s) => ({ label: s.name || s.id, value: s.users, text: `${fmt(s.users)} (${pct(s.share)})` })),
      { color: "#7c5cd6", labelWidth: 150 });
    bars($("chart-categories"), (o.top_categories || []).slice(0, 10).map((c) => ({ label: c.category, value: c.share, text: pct(c.share) })),
      { color: "#0e9aa7" });
    const hist = churn.histogram || [];
    columns($("chart-churn"), hist, hist.map((_, i) => `.${i}`), { color: "#d6453d" });

    const tbody = $("segment-table").tBodies[0];
    const rows = (o.segments || []).map((s) => el("tr", { "data-segment": s.id },
      el("td", { text: s.id }), el("td", { text: s.name || "—" }), el("td", { class: "num", text: fmt(s.users) }),
      el("td", { class: "num", text: pct(s.share) }), el("td", { class: "num", text: money(s.gmv_30d) }),
      el("td", { class: "num", text: pct(s.gmv_30d_share) })));
    tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "6", class: "empty", text: "no segments yet" }))]));
  }

  async function loadOverview() {
    try {
      renderOverview(await api("/v1/overview"));
      status("conn-status", "ok", "connected");
    } catch (error) {
      handleError(error, "overview");
    }
  }

  async function loadModels() {
    try {
      $("models-body").textContent = JSON.stringify(await api("/v1/models"), null, 2);
    } catch (error) {
      $("models-body").textContent = error.status === 404 ? "no model summary published yet" : `could not load: ${error.message}`;
    }
  }

  // -- portrait -------------------------------------------------------------------------------

  function kv(pairs) {
    return el("dl", { class: "kv" }, pairs.flatMap(([label, value, field]) => [el("dt", { text: label }), el("dd", { "data-field": field, text: value })]));
  }

  function block(title, cls, ...content) {
    return el("div", { class: `block ${cls || ""}` }, el("h3", { text: title }), ...content);
  }

  const SHOWN = new Set(["user_id", "as_of", "first_seen", "last_seen", "first_purchase", "last_purchase", "days_since_last_seen",
    "days_since_last_purchase", "lifetime", "windows", "aov", "purchase_days", "last_return_gap_days", "refund_rate", "active_hours",
    "weekdays", "peak_hour", "weekend_share", "timezone", "top_categories", "category_count", "funnel", "devices", "promo_share",
    "profile", "version"]);

  // [label, text, field] rows for nested values, one level of objects spelled out (rfm.layer, churn.risk, ...)
  function flatten(entries) {
    return entries.flatMap(([k, v]) => (v && typeof v === "object" && !Array.isArray(v)
      ? Object.entries(v).map(([sub, x]) => [`${k}.${sub}`, Array.isArray(x) ? x.map((i) => fmt(i)).join(", ") : fmt(x), `${k}.${sub}`])
      : [[k, Array.isArray(v) ? v.map((i) => fmt(i)).join(", ") : fmt(v), k]]));
  }

  function renderPortrait(p) {
    const life = p.lifetime || {};
    const windows = p.windows || {};
    const funnel = p.funnel || {};
    const target = $("portrait");
    const hoursChart = el("div", { class: "chart" });
    const daysChart = el("div", { class: "chart" });
    const catChart = el("div", { class: "chart" });
    const windowRows = Object.entries(windows).map(([name, w]) =>
      el("tr", {}, el("td", { text: name }), el("td", { class: "num", "data-field": `windows.${name}.events`, text: fmt(w.events) }),
        el("td", { class: "num", "data-field": `windows.${name}.purchases`, text: fmt(w.purchases) }),
        el("td", { class: "num", "data-field": `windows.${name}.spend`, text: money(w.spend) })));
    const extra = Object.entries(p).filter(([k]) => !SHOWN.has(k));
    const blocks = [
      block("Who", "", kv([
        ["user", p.user_id, "user_id"], ["as of", when(p.as_of), "as_of"], ["first seen", when(p.first_seen), "first_seen"],
        ["last seen", when(p.last_seen), "last_seen"], ["days since seen", fmt(p.days_since_last_seen), "days_since_last_seen"],
        ["first purchase", when(p.first_purchase), "first_purchase"], ["last purchase", when(p.last_purchase), "last_purchase"],
        ["days since purchase", fmt(p.days_since_last_purchase), "days_since_last_purchase"], ["version", fmt(p.version), "version"],
      ])),
      block("Lifetime", "", kv([
        ["events", fmt(life.events), "lifetime.events"], ["purchases", fmt(life.purchases), "lifetime.purchases"],
        ["spend", money(life.spend), "lifetime.spend"], ["refunds", fmt(life.refunds), "lifetime.refunds"],
        ["refund amount", money(life.refund_amount), "lifetime.refund_amount"], ["net spend", money(life.net_spend), "lifetime.net_spend"],
        ["AOV", money(p.aov), "aov"], ["purchase days", fmt(p.purchase_days), "purchase_days"],
        ["refund rate", pct(p.refund_rate), "refund_rate"], ["last return gap (days)", fmt(p.last_return_gap_days), "last_return_gap_days"],
      ])),
      block("Profile", "", kv([
        ...Object.entries(p.profile || {}).map(([k, v]) => [k, fmt(v), `profile.${k}`]),
        ["timezone", p.timezone || "—", "timezone"],
        ["devices", Object.entries(p.devices || {}).map(([d, s]) => `${d} ${pct(s)}`).join(", ") || "—", "devices"],
        ["promo share", pct(p.promo_share), "promo_share"],
      ])),
      block("Windows", "", el("table", { class: "table" },
        el("thead", {}, el("tr", {}, el("th", { text: "window" }), el("th", { class: "num", text: "events" }), el("th", { class: "num", text: "purchases" }), el("th", { class: "num", text: "spend" }))),
        el("tbody", {}, windowRows))),
      block("Funnel", "", kv([
        ["views", fmt(funnel.views), "funnel.views"], ["searches", fmt(funnel.searches), "funnel.searches"],
        ["clicks", fmt(funnel.clicks), "funnel.clicks"], ["add to cart", fmt(funnel.add_to_cart), "funnel.add_to_cart"],
        ["favorites", fmt(funnel.favorites), "funnel.favorites"], ["orders", fmt(funnel.orders), "funnel.orders"],
        ["purchases", fmt(funnel.purchases), "funnel.purchases"], ["cart → purchase", pct(funnel.cart_to_purchase), "funnel.cart_to_purchase"],
        ["favorite → purchase", pct(funnel.favorite_to_purchase), "funnel.favorite_to_purchase"], ["abandoned carts", fmt(funnel.abandoned_carts), "funnel.abandoned_carts"],
      ])),
      block(`Top categories (${fmt(p.category_count)})`, "", catChart),
      block(`Active hours (peak ${p.peak_hour === null || p.peak_hour === undefined ? "—" : `${p.peak_hour}:00`}, ${p.timezone || ""})`, "span2", hoursChart),
      block(`Weekdays (weekend ${pct(p.weekend_share)})`, "", daysChart),
      extra.length ? block("Models and tags", "span3", kv(flatten(extra))) : null,
      el("details", { class: "block span3" }, el("summary", { text: "Raw portrait JSON" }), el("pre", { class: "raw", text: JSON.stringify(p, null, 2) })),
    ];
    target.replaceChildren(...blocks.filter(Boolean));
    columns(hoursChart, p.active_hours || [], (p.active_hours || []).map((_, h) => (h % 3 === 0 ? String(h) : "")), { width: 860 });
    columns(daysChart, p.weekdays || [], WEEKDAYS, { color: "#0e9aa7" });
    bars(catChart, (p.top_categories || []).map((c) => ({ label: c.category, value: c.score, text: fmt(c.score) })), { color: "#7c5cd6" });
    target.hidden = false;
  }

  async function lookup(userId) {
    userId = (userId || "").trim();
    if (!userId) return;
    const target = $("portrait");
    target.dataset.user = userId;
    target.dataset.state = "loading";
    try {
      const portrait = await api(`/v1/users/${encodeURIComponent(userId)}/portrait`);
      if (target.dataset.user !== userId) return; // a newer lookup started
      renderPortrait(portrait);
      target.dataset.state = "loaded";
      say("");
    } catch (error) {
      target.dataset.state = "error";
      if (error.status === 404) {
        target.replaceChildren(el("div", { class: "empty", text: error.message }));
        target.hidden = false;
      } else {
        handleError(error, "portrait");
      }
    }
  }

  // -- alerts ---------------------------------------------------------------------------------

  function alertItem(a, isNew) {
    const risk = isNum(a.risk) ? a.risk : null;
    const item = el("li", { class: `${risk !== null && risk >= 0.8 ? "high" : ""} ${isNew ? "new" : ""}`, "data-alert-id": a.alert_id, "data-user": a.user_id },
      el("div", {},
        el("span", { class: "who", text: a.user_id }), " ",
        el("span", { text: `risk ${risk !== null ? risk.toFixed(3) : "—"}${isNum(a.threshold) ? ` (threshold ${a.threshold})` : ""}` })),
      el("div", { class: "meta", text: [when(a.ts), a.layer, a.kind].filter(Boolean).join(" · ") }),
      a.reasons && a.reasons.length ? el("div", { class: "meta", text: a.reasons.join("; ") }) : null);
    return item;
  }

  function addAlert(a, { isNew = false, atTop = true } = {}) {
    if (!a || !a.alert_id || seenAlerts.has(a.alert_id)) return;
    seenAlerts.add(a.alert_id);
    const feed = $("alert-feed");
    const item = alertItem(a, isNew);
    const ts = isNum(a.ts_ms) ? a.ts_ms : Date.now();
    item.dataset.ts = String(ts);
    // newest (event time) first; a live alert goes on top, a caught-up one where its time puts it
    const before = atTop ? feed.firstElementChild : [...feed.children].find((li) => Number(li.dataset.ts) < ts) || null;
    feed.insertBefore(item, before);
    while (feed.children.length > FEED_LIMIT) feed.lastElementChild.remove();
    $("alert-count").textContent = String(feed.children.length);
  }

  async function loadAlerts() {
    try {
      const list = await api("/v1/alerts?limit=50");
      for (const a of list.alerts || []) addAlert(a, { atTop: false });
      return true;
    } catch (error) {
      handleError(error, "alerts");
      return !(error.status === 401 || error.status === 403); // no point streaming with a refused token
    }
  }

  function closeStream() {
    if (source) source.close();
    source = null;
    clearTimeout(reconnectTimer);
  }

  function openStream() {
    closeStream();
    if (!token) return;
    status("feed-status", "wait", "connecting");
    source = new EventSource(`/v1/alerts/stream?token=${encodeURIComponent(token)}`);
    const mine = source;
    source.addEventListener("open", () => status("feed-status", "ok", "live"));
    source.addEventListener("alert", (event) => {
      try { addAlert(JSON.parse(event.data), { isNew: true }); } catch (_) { /* ignore a bad record */ }
    });
    source.addEventListener("dropped", (event) => {
      try { say(`the live feed fell behind and skipped ${JSON.parse(event.data).dropped} alert(s)`, "info"); } catch (_) { /* ignore */ }
    });
    source.addEventListener("error", () => {
      if (mine !== source) return;
      if (source.readyState === EventSource.CLOSED) {
        // refused (bad token) or the server went away: retry later, and catch up on what was missed
        status("feed-status", "error", "disconnected");
        reconnectTimer = setTimeout(async () => { if (token && (await loadAlerts())) openStream(); }, 5000);
      } else {
        status("feed-status", "wait", "reconnecting");
      }
    });
  }

  // -- wiring ---------------------------------------------------------------------------------

  function handleError(error, what) {
    if (error.status === 401 || error.status === 403) {
      status("conn-status", "error", error.status === 401 ? "token rejected" : "role too weak");
      say(`${what}: ${error.message}`);
    } else {
      say(`${what}: ${error.message || error}`);
    }
  }

  function connect() {
    say("");
    clearInterval(overviewTimer);
    if (!token) {
      status("conn-status", "idle", "not connected");
      status("feed-status", "idle", "offline");
      say("Enter an API token (from PORTRAITS_API_TOKENS) to load the dashboard.", "info");
      return;
    }
    status("conn-status", "wait", "connecting");
    loadOverview();
    loadModels();
    loadAlerts().then((ok) => { if (ok) openStream(); else status("feed-status", "error", "refused"); });
    overviewTimer = setInterval(loadOverview, OVERVIEW_EVERY_MS);
    const wanted = new URLSearchParams(location.hash.slice(1)).get("user");
    if (wanted) {
      $("lookup-input").value = wanted;
      lookup(wanted);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("token-input").value = token ? "••••••••" : "";
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token-input").value.trim();
      if (value && value !== "••••••••") {
        token = value;
        sessionStorage.setItem(TOKEN_KEY, token);
        $("token-input").value = "••••••••";
      }
      connect();
    });
    $("token-clear").addEventListener("click", () => {
      token = "";
      sessionStorage.removeItem(TOKEN_KEY);
      $("token-input").value = "";
      closeStream();
      connect();
    });
    $("overview-refresh").addEventListener("click", loadOverview);
    $("lookup-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const userId = $("lookup-input").value.trim();
      history.replaceState(null, "", userId ? `#user=${encodeURIComponent(userId)}` : "#");
      lookup(userId);
    });
    connect();
  });
})();
