// Ops dashboard of the customer-portrait API. Charts are Apache ECharts (charts.js, views.js); the rest
// is plain DOM. The page holds no data of its own; it asks for a bearer token (kept in sessionStorage
// only) and calls the JSON endpoints with it. The live alert feed uses EventSource, which cannot send
// headers, so /v1/alerts/stream takes the token as ?token=.

import { chartsAvailable, draw, nothing, release } from "./charts.js";
import { fmt, hourLabel, isNum, money, pct, when } from "./format.js";
import { AARRR, AARRR_VIEWS, aarrrFigures, ASSOCIATIONS, OVERVIEW, OVERVIEW_VIEWS, PAIR_COLUMNS, PAIR_VIEWS, pairRows } from "./views.js";
import { PORTRAIT_VIEWS, PRODUCT_COLUMNS, PRODUCT_VIEWS, PRODUCT_WINDOWS, productPath, productRows } from "./views.js";

const TOKEN_KEY = "portraits.dashboard.token";
const FEED_LIMIT = 200;
const OVERVIEW_EVERY_MS = 15000;
const PAIRS_SHOWN = 15;

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

// -- overview -------------------------------------------------------------------------------

function kpi(label, value, field) {
  return el("div", { class: "kpi" }, el("div", { class: "label", text: label }), el("div", { class: "value", "data-field": field, text: value }));
}

/** The element a chart is drawn in; when the chart library did not load, it says so instead. */
function chartBox(id, attrs) {
  return el("div", { id, class: "chart", ...attrs },
    chartsAvailable() ? null : el("div", { class: "empty", text: "the chart library did not load (/static/vendor/echarts/): run scripts/install on the API's machine" }));
}

/** A card of a view of views.js, its chart element carrying the view's id. */
function card(view, attrs) {
  return el("figure", { class: `card ${view.span === 2 ? "span2" : ""}` },
    el("figcaption", {}, view.title, " ", el("small", { text: view.note })), chartBox(view.id, attrs));
}

/** The cards of the overview, AARRR and co-purchase views; the AARRR figures beside the retention triangle. */
function buildCards() {
  $("overview-charts").replaceChildren(...OVERVIEW_VIEWS.map((view) => card(view, { "data-source": view.source })));
  const [triangle, ...weekly] = AARRR_VIEWS.map((view) => card(view, { "data-source": AARRR }));
  triangle.querySelector(".chart").classList.add("tall");
  $("aarrr-charts").replaceChildren(triangle,
    el("figure", { class: "card" }, el("figcaption", { text: "Figures of the window" }), el("div", { id: "aarrr-figures" })), ...weekly);
  $("pairs-charts").replaceChildren(...PAIR_VIEWS.map((view) => card(view, { "data-source": ASSOCIATIONS })));
  $("pairs-table").tHead.replaceChildren(el("tr", {}, PAIR_COLUMNS.map(([heading, , numeric]) => el("th", { class: numeric ? "num" : null, text: heading }))));
}

/** Draw a view, or say on its card why it cannot be drawn. */
function drawView(target, option) {
  if (!chartsAvailable()) return;
  try {
    draw(target, option());
  } catch (error) {
    draw(target, nothing(`could not draw: ${error.message}`));
  }
}

function renderOverview(o) {
  const churn = o.churn || {};
  const rep = o.repurchase || {};
  const clv = o.clv || {};
  $("overview-kpis").replaceChildren(
    kpi("users", fmt(o.users), "overview.users"),
    kpi("mobile share", pct(o.mobile_share), "overview.mobile_share"),
    kpi("peak hour", o.activity && isNum(o.activity.peak_hour) ? hourLabel(o.activity.peak_hour) : "—", "overview.peak_hour"),
    kpi("repurchase 30d", pct(rep.rate), "overview.repurchase"),
    kpi("users scored", fmt(churn.users_scored), "overview.users_scored"),
    kpi("mean churn risk", isNum(churn.mean_risk) ? churn.mean_risk.toFixed(3) : "—", "overview.mean_risk"),
    kpi("users with CLV", fmt(clv.users_valued), "overview.clv_users"),
    kpi("mean CLV", money(clv.mean), "overview.clv_mean"),
  );
  const tbody = $("segment-table").tBodies[0];
  const rows = (o.segments || []).map((s) => el("tr", { "data-segment": s.id },
    el("td", { text: s.id }), el("td", { text: s.name || "—" }), el("td", { class: "num", text: fmt(s.users) }),
    el("td", { class: "num", text: pct(s.share) }), el("td", { class: "num", text: money(s.gmv_30d) }),
    el("td", { class: "num", text: pct(s.gmv_30d_share) })));
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "6", class: "empty", text: "no segments yet" }))]));
}

/** Fetch each source of the overview's views once, then fill the KPIs, the segment table and every card. */
async function loadOverview() {
  const sources = [...new Set([OVERVIEW, ...OVERVIEW_VIEWS.map((view) => view.source)])];
  const answers = new Map(await Promise.all(sources.map((path) =>
    api(path).then((data) => [path, { data }], (error) => [path, { error }]))));
  const overview = answers.get(OVERVIEW);
  if (overview.error) {
    handleError(overview.error, "overview");
    if (overview.error.status === 401 || overview.error.status === 403) return; // refused: nothing to draw
  } else {
    renderOverview(overview.data);
    status("conn-status", "ok", "connected");
  }
  for (const view of OVERVIEW_VIEWS) {
    const { data, error } = answers.get(view.source);
    drawView($(view.id), error ? () => nothing(`${view.source}: ${error.message}`) : () => view.option(data));
  }
}

async function loadModels() {
  try {
    $("models-body").textContent = JSON.stringify(await api("/v1/models"), null, 2);
  } catch (error) {
    $("models-body").textContent = error.status === 404 ? "no model summary published yet" : `could not load: ${error.message}`;
  }
}

// -- AARRR and co-purchases -----------------------------------------------------------------

/** The path of the AARRR the form asks for: its window and activation days (the API's defaults where empty). */
function aarrrPath() {
  const params = new URLSearchParams();
  for (const [name, id] of [["from", "aarrr-from"], ["to", "aarrr-to"], ["activation_days", "aarrr-activation"]]) {
    const value = $(id).value.trim();
    if (value) params.set(name, value);
  }
  const query = params.toString();
  return query ? `${AARRR}?${query}` : AARRR;
}

/** The AARRR of the form's window: the retention triangle, the weekly charts and the figures. */
async function loadAarrr() {
  const path = aarrrPath();
  const figures = $("aarrr-figures");
  figures.dataset.path = path;
  let aarrr = null;
  let failure = null;
  try {
    aarrr = await api(path);
  } catch (error) {
    failure = error;
  }
  if (figures.dataset.path !== path) return; // a newer window was asked for
  figures.replaceChildren(failure
    ? el("div", { class: "empty", text: `${path}: ${failure.message}` })
    : kv(aarrrFigures(aarrr).map(([label, text, field]) => [label, text, `aarrr.${field}`])));
  for (const view of AARRR_VIEWS) drawView($(view.id), failure ? () => nothing(`${path}: ${failure.message}`) : () => view.option(aarrr));
}

/** The co-purchase pairs of the filter's category (all without one), in the chosen order: a table and two charts. */
async function loadPairs() {
  const params = new URLSearchParams({ sort: $("pairs-sort").value, limit: String(PAIRS_SHOWN) });
  const category = $("pairs-category").value.trim();
  if (category) params.set("category", category);
  const query = params.toString();
  const body = $("pairs-body");
  body.dataset.query = query;
  body.dataset.state = "loading";
  let answer = null;
  let failure = null;
  try {
    answer = await api(`${ASSOCIATIONS}?${query}`);
  } catch (error) {
    failure = error;
  }
  if (body.dataset.query !== query) return; // a newer filter was sent
  const tbody = $("pairs-table").tBodies[0];
  const empty = (text) => [el("tr", {}, el("td", { colspan: String(PAIR_COLUMNS.length), class: "empty", text }))];
  if (failure) {
    tbody.replaceChildren(...empty(failure.message));
    $("pairs-window").textContent = "";
  } else {
    const rows = pairRows(answer).map((cells, i) => el("tr", { "data-pair": `${answer.pairs[i].a}|${answer.pairs[i].b}` },
      cells.map((text, c) => el("td", { class: PAIR_COLUMNS[c][2] ? "num" : null, text }))));
    tbody.replaceChildren(...(rows.length ? rows : empty(category ? `no pair with ${category} bought together` : "no pair bought together yet")));
    const win = answer.window;
    $("pairs-window").textContent = `${fmt(answer.baskets)} baskets, ${win.first_day || "—"} – ${win.last_day || "—"} (${win.days} days)`;
  }
  for (const view of PAIR_VIEWS) drawView($(view.id), failure ? () => nothing(failure.message) : () => view.option(answer));
  body.dataset.state = failure ? "error" : "loaded";
}

/** Everything the refresh button and the timer renew. */
function refresh() {
  loadOverview();
  loadAarrr();
  loadPairs();
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
    ...PORTRAIT_VIEWS.map((view) => block(view.title(p), view.span === 2 ? "span2" : "", chartBox(view.id))),
    extra.length ? block("Models and tags", "span3", kv(flatten(extra))) : null,
    el("details", { class: "block span3" }, el("summary", { text: "Raw portrait JSON" }), el("pre", { class: "raw", text: JSON.stringify(p, null, 2) })),
  ];
  if (chartsAvailable()) release(target);
  target.replaceChildren(...blocks.filter(Boolean));
  target.hidden = false; // before drawing: a chart takes its size from its element
  for (const view of PORTRAIT_VIEWS) drawView($(view.id), () => view.option(p));
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
      if (chartsAvailable()) release(target);
      target.replaceChildren(el("div", { class: "empty", text: error.message }));
      target.hidden = false;
    } else {
      handleError(error, "portrait");
    }
  }
}

// -- product portrait -----------------------------------------------------------------------

function renderProduct(p) {
  const life = p.lifetime || {};
  const target = $("product-portrait");
  const table = el("table", { class: "table" },
    el("thead", {}, el("tr", {}, el("th", { text: "window" }), PRODUCT_COLUMNS.map(([heading]) => el("th", { class: "num", text: heading })))),
    el("tbody", {}, productRows(p).map((cells, i) => el("tr", {}, el("td", { text: PRODUCT_WINDOWS[i] }),
      cells.map(([field, text]) => el("td", { class: "num", "data-field": field, text }))))));
  const blocks = [
    block(p.kind === "category" ? "Category" : "Item", "", kv([
      [p.kind, p.id, "id"], ["category", p.category || "—", "category"], ["as of", when(p.as_of), "as_of"],
      ["shop day", p.as_of_day, "as_of_day"], ["first seen", when(p.first_seen), "first_seen"], ["last seen", when(p.last_seen), "last_seen"],
    ])),
    block("Lifetime", "span2", kv([
      ["views", fmt(life.views), "lifetime.views"], ["add to cart", fmt(life.add_to_cart), "lifetime.add_to_cart"],
      ["favorites", fmt(life.favorites), "lifetime.favorites"], ["purchases", fmt(life.purchases), "lifetime.purchases"],
      ["GMV", money(life.gmv), "lifetime.gmv"], ["refunds", fmt(life.refunds), "lifetime.refunds"],
      ["refund amount", money(life.refund_amount), "lifetime.refund_amount"],
    ])),
    block(`Windows (shop days up to ${p.as_of_day}, ${p.timezone})`, "span3", table),
    ...PRODUCT_VIEWS.map((view) => block(`${view.title} (${view.note})`, "", chartBox(view.id))),
    el("details", { class: "block span3" }, el("summary", { text: "Raw portrait JSON" }), el("pre", { class: "raw", text: JSON.stringify(p, null, 2) })),
  ];
  if (chartsAvailable()) release(target);
  target.replaceChildren(...blocks);
  target.hidden = false; // before drawing: a chart takes its size from its element
  for (const view of PRODUCT_VIEWS) drawView($(view.id), () => view.option(p));
}

/** Show an item's (kind "item") or a category's portrait; a 404 shows the API's message in its place. */
async function lookupProduct(kind, name) {
  name = (name || "").trim();
  if (!name) return;
  const target = $("product-portrait");
  const wanted = `${kind}:${name}`;
  target.dataset.product = wanted;
  target.dataset.state = "loading";
  try {
    const portrait = await api(productPath(kind, name));
    if (target.dataset.product !== wanted) return; // a newer lookup started
    renderProduct(portrait);
    target.dataset.state = "loaded";
  } catch (error) {
    if (target.dataset.product !== wanted) return;
    target.dataset.state = "error";
    if (error.status === 401 || error.status === 403) {
      handleError(error, "product portrait");
      return;
    }
    if (chartsAvailable()) release(target);
    target.replaceChildren(el("div", { class: "empty", text: error.message }));
    target.hidden = false;
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
  refresh();
  loadModels();
  loadAlerts().then((ok) => { if (ok) openStream(); else status("feed-status", "error", "refused"); });
  overviewTimer = setInterval(refresh, OVERVIEW_EVERY_MS);
  showLinked();
}

/** Look up what the address names (#user=...&item=... or &category=...): a shared link, or one edited by hand. */
function showLinked() {
  if (!token) return;
  const wanted = new URLSearchParams(location.hash.slice(1));
  if (wanted.get("user")) {
    $("lookup-input").value = wanted.get("user");
    lookup(wanted.get("user"));
  }
  for (const kind of ["item", "category"]) {
    if (wanted.get(kind)) {
      $("product-kind").value = kind;
      $("product-input").value = wanted.get(kind);
      lookupProduct(kind, wanted.get(kind));
    }
  }
}

/** Keep what is looked up in the address (#user=...&item=... or &category=...), so a link shows it again. */
function remember(values) {
  const hash = new URLSearchParams(location.hash.slice(1));
  for (const [name, value] of Object.entries(values)) {
    if (value) hash.set(name, value); else hash.delete(name);
  }
  const text = hash.toString();
  history.replaceState(null, "", text ? `#${text}` : "#");
}

document.addEventListener("DOMContentLoaded", () => {
  buildCards();
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
  $("overview-refresh").addEventListener("click", refresh);
  $("aarrr-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadAarrr();
  });
  $("pairs-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadPairs();
  });
  $("product-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const kind = $("product-kind").value;
    const name = $("product-input").value.trim();
    remember({ item: kind === "item" ? name : "", category: kind === "category" ? name : "" });
    lookupProduct(kind, name);
  });
  $("lookup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const userId = $("lookup-input").value.trim();
    remember({ user: userId });
    lookup(userId);
  });
  window.addEventListener("hashchange", showLinked);
  connect();
});
