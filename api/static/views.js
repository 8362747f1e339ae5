// The dashboard's charts: one small function per chart, from an endpoint's JSON to an ECharts option.
//
// OVERVIEW_VIEWS lists the overview's cards. Each names the endpoint it draws (`source`); the page
// fetches every source once per refresh and hands its JSON to the cards drawing it, so a chart of
// another endpoint is one entry here and one option function. A card whose source fails says so
// on the card and leaves the others alone. The AARRR, co-purchase and product sections have lists of
// their own (AARRR_VIEWS, PAIR_VIEWS, PRODUCT_VIEWS), with the figures and table rows written beside them.

import { bars, columns, COLORS, groupedBars, heatmap, nothing } from "./charts.js";
import { fmt, hourLabel, isNum, money, pct, short, WEEKDAYS } from "./format.js";

export const OVERVIEW = "/v1/overview";

const wholePct = (x) => `${Math.round(x * 100)}%`;

const HOURS = Array.from({ length: 24 }, (_, h) => hourLabel(h));
// the hours of the overview's evening_share (online_models.vocabulary.VISIT_PEAK_HOURS)
const EVENING = [20, 21];
const LAYER_NAMES = { high_value: "high value", potential: "potential", ordinary: "ordinary", low_value: "low value" };

/** Events by hour of day, the evening visit peak marked with its share of events. */
export function activityByHour(o) {
  const activity = o.activity || {};
  return columns(HOURS, activity.hours || [], {
    name: "events",
    highlight: { indexes: EVENING, text: `${HOURS[EVENING[0]]}–${hourLabel(EVENING[EVENING.length - 1] + 1)}: ${pct(activity.evening_share)} of events` },
  });
}

/** Events by weekday, Monday first. */
export function activityByWeekday(o) {
  return columns(WEEKDAYS, (o.activity || {}).weekdays || [], { name: "events", color: COLORS.teal });
}

/** Each value layer's share of the users, of the 30-day GMV and of the CLV. */
export function valueLayers(o) {
  const layers = o.value_layers || [];
  if (!layers.some((l) => l.users > 0)) return nothing();
  return groupedBars(layers.map((l) => LAYER_NAMES[l.layer] || l.layer), [
    { name: "users", values: layers.map((l) => l.share), color: COLORS.grey },
    { name: "GMV 30d", values: layers.map((l) => l.gmv_30d_share), color: COLORS.blue },
    { name: "CLV", values: layers.map((l) => l.clv_share), color: COLORS.green },
  ], { format: pct, axisFormat: wholePct });
}

/** Label of a CLV histogram bin: "20–50", the last one "1M+". */
export const clvBinLabel = (bin) => (bin.high === null ? `${short(bin.low)}+` : `${short(bin.low)}–${short(bin.high)}`);

/** Users by predicted customer lifetime value, in the overview's 1-2-5 bins. */
export function clvDistribution(o) {
  const histogram = (o.clv || {}).histogram || [];
  if (!histogram.length) return nothing("no CLV yet: the trainer has not published a spend model");
  return columns(histogram.map(clvBinLabel), histogram.map((b) => b.users), { name: "users", color: COLORS.green });
}

/** Users per behaviour segment. */
export function segments(o) {
  const rows = o.segments || [];
  return bars(rows.map((s) => s.name || s.id), rows.map((s) => s.users), { name: "users", color: COLORS.violet });
}

/** Share of users with each category among their top categories. */
export function topCategories(o) {
  const rows = o.top_categories || [];
  return bars(rows.map((c) => c.category), rows.map((c) => c.share), { name: "users", color: COLORS.teal, format: pct, axisFormat: wholePct });
}

/** Users by churn risk in tenths. */
export function churnRisk(o) {
  const histogram = (o.churn || {}).histogram || [];
  const labels = histogram.map((_, i) => `${(i / 10).toFixed(1)}–${((i + 1) / 10).toFixed(1)}`);
  return columns(labels, histogram, { name: "users", color: COLORS.red });
}

export const OVERVIEW_VIEWS = [
  { id: "chart-hours", source: OVERVIEW, span: 2, title: "Activity by hour", note: "events, shop time; amber: the evening visit peak", option: activityByHour },
  { id: "chart-weekdays", source: OVERVIEW, title: "Activity by weekday", note: "events", option: activityByWeekday },
  { id: "chart-layers", source: OVERVIEW, title: "Value layers", note: "share of users, 30-day GMV and CLV", option: valueLayers },
  { id: "chart-clv", source: OVERVIEW, span: 2, title: "Customer lifetime value", note: "users by predicted value (clv.value)", option: clvDistribution },
  { id: "chart-segments", source: OVERVIEW, title: "Segments", note: "users", option: segments },
  { id: "chart-categories", source: OVERVIEW, title: "Top categories", note: "share of users with it in their top", option: topCategories },
  { id: "chart-churn", source: OVERVIEW, title: "Churn risk", note: "users by risk", option: churnRisk },
];

// -- one user's portrait ------------------------------------------------------------------------

/** The user's events by hour of day. */
export function portraitHours(p) {
  return columns(HOURS.map((h) => h.slice(0, 2)), p.active_hours || [], { name: "events" });
}

/** The user's events by weekday. */
export function portraitWeekdays(p) {
  return columns(WEEKDAYS, p.weekdays || [], { name: "events", color: COLORS.teal });
}

/** The user's top categories by decayed affinity score. */
export function portraitCategories(p) {
  const rows = p.top_categories || [];
  return bars(rows.map((c) => c.category), rows.map((c) => c.score), { name: "score", color: COLORS.violet, format: (x) => fmt(x) });
}

/** The portrait's chart blocks: `title` and `option` both take the portrait's JSON. */
export const PORTRAIT_VIEWS = [
  { id: "portrait-categories", title: (p) => `Top categories (${fmt(p.category_count)})`, option: portraitCategories },
  {
    id: "portrait-hours", span: 2, option: portraitHours,
    title: (p) => `Active hours (peak ${isNum(p.peak_hour) ? hourLabel(p.peak_hour) : "—"}${p.timezone ? `, ${p.timezone}` : ""})`,
  },
  { id: "portrait-weekdays", title: (p) => `Weekdays (weekend ${pct(p.weekend_share)})`, option: portraitWeekdays },
];

// -- AARRR over shop weeks (GET /v1/aarrr) ---------------------------------------------------------

export const AARRR = "/v1/aarrr";

/** Label of a retention column: weeks after the cohort's first. */
export const weeksAfterLabel = (k) => `week ${k}`;

/** Label of a cohort's row: its Monday and its users. */
export const cohortLabel = (cohort) => `${cohort.week} (${fmt(cohort.users)})`;

/** The weekly cohort retention triangle: a row per cohort (oldest on top), its share retained k weeks after. */
export function retentionTriangle(a) {
  const cohorts = (a.retention || {}).cohorts || [];
  const width = Math.max(0, ...cohorts.map((c) => c.cells.length));
  const cells = cohorts.flatMap((c, row) => c.cells.filter((cell) => isNum(cell.share)).map((cell) => [cell.weeks_after, row, cell.share]));
  if (!cells.length) return nothing("no cohort yet: nobody first seen in the window");
  return heatmap(Array.from({ length: width }, (_, k) => weeksAfterLabel(k)), cohorts.map(cohortLabel), cells, { name: "retained", format: pct });
}

/** New, active and paying users per week of the window. */
export function weeklyUsers(a) {
  const revenue = (a.revenue || {}).by_week || [];
  const acquired = new Map(((a.acquisition || {}).by_week || []).map((w) => [w.week, w.users]));
  if (!revenue.some((w) => w.active_users > 0) && ![...acquired.values()].some((n) => n > 0)) return nothing();
  return groupedBars(revenue.map((w) => w.week), [
    { name: "new", values: revenue.map((w) => acquired.get(w.week) ?? 0), color: COLORS.teal },
    { name: "active", values: revenue.map((w) => w.active_users), color: COLORS.grey },
    { name: "paying", values: revenue.map((w) => w.paying_users), color: COLORS.green },
  ]);
}

/** GMV per week of the window. */
export function weeklyGmv(a) {
  const weeks = (a.revenue || {}).by_week || [];
  return columns(weeks.map((w) => w.week), weeks.map((w) => w.gmv), { name: "GMV", color: COLORS.blue, format: money, axisFormat: short });
}

export const AARRR_VIEWS = [
  { id: "aarrr-retention", span: 2, title: "Weekly cohort retention", note: "share of each week's new users with an event k weeks later", option: retentionTriangle },
  { id: "aarrr-users", title: "Users by week", note: "new, active and paying", option: weeklyUsers },
  { id: "aarrr-gmv", span: 2, title: "GMV by week", note: "payments, gross of refunds", option: weeklyGmv },
];

/** The acquisition, activation, revenue and referral figures of the window: [label, text, field] rows. */
export function aarrrFigures(a) {
  const win = a.window || {};
  const acq = a.acquisition || {};
  const act = a.activation || {};
  const rev = a.revenue || {};
  const ref = a.referral || {};
  return [
    ["window", win.start ? `${win.start} – ${win.end} (${fmt(win.weeks)} weeks)` : "—", "window"],
    ["new users", fmt(acq.new_users), "acquisition.new_users"],
    [`activated within ${fmt(act.within_days)} days`, fmt(act.activated), "activation.activated"],
    ["activation rate", pct(act.rate), "activation.rate"],
    ["active users", fmt(rev.active_users), "revenue.active_users"],
    ["paying users", fmt(rev.paying_users), "revenue.paying_users"],
    ["purchases", fmt(rev.purchases), "revenue.purchases"],
    ["GMV", money(rev.gmv), "revenue.gmv"],
    ["ARPU", money(rev.arpu), "revenue.arpu"],
    ["ARPPU", money(rev.arppu), "revenue.arppu"],
    ["shares", fmt(ref.shares), "referral.shares"],
    ["sharing users", fmt(ref.sharing_users), "referral.sharing_users"],
    ["share rate", pct(ref.share_rate), "referral.share_rate"],
  ];
}

// -- co-purchase pairs (GET /v1/associations) ------------------------------------------------------

export const ASSOCIATIONS = "/v1/associations";

/** A pair as one label: "a + b". */
export const pairLabel = (pair) => `${pair.a} + ${pair.b}`;

/** The pairs' support: share of the window's baskets holding both. */
export function pairSupport(s) {
  const pairs = s.pairs || [];
  if (!pairs.length) return nothing("no pair bought together");
  return bars(pairs.map(pairLabel), pairs.map((p) => p.support), { name: "support", color: COLORS.blue, format: pct, axisFormat: pct });
}

/** The pairs' lift: above 1, bought together more often than chance. */
export function pairLift(s) {
  const pairs = s.pairs || [];
  if (!pairs.length) return nothing("no pair bought together");
  return bars(pairs.map(pairLabel), pairs.map((p) => p.lift), { name: "lift", color: COLORS.violet, format: (x) => fmt(x) });
}

export const PAIR_VIEWS = [
  { id: "pairs-support", title: "Support", note: "share of baskets holding both", option: pairSupport },
  { id: "pairs-lift", title: "Lift", note: "above 1: together more often than chance", option: pairLift },
];

/** The pair table's columns: [heading, text of a pair, numeric]. */
export const PAIR_COLUMNS = [
  ["a", (p) => p.a, false],
  ["b", (p) => p.b, false],
  ["baskets", (p) => fmt(p.baskets), true],
  ["support", (p) => pct(p.support), true],
  ["confidence a → b", (p) => pct(p.confidence_ab), true],
  ["confidence b → a", (p) => pct(p.confidence_ba), true],
  ["lift", (p) => fmt(p.lift), true],
];

/** The pair table's rows: one list of cell texts per pair, in PAIR_COLUMNS' order. */
export const pairRows = (s) => (s.pairs || []).map((p) => PAIR_COLUMNS.map(([, text]) => text(p)));

// -- an item's or a category's portrait (GET /v1/items/{id}/portrait, /v1/categories/{name}/portrait) --

export const PRODUCT_WINDOWS = ["7d", "30d", "90d"];
const LAYER_ORDER = Object.keys(LAYER_NAMES);

/** The portrait's path: `kind` "item" or "category". */
export const productPath = (kind, name) => `/v1/${kind === "category" ? "categories" : "items"}/${encodeURIComponent(name)}/portrait`;

const windowOf = (p, name) => (p.windows || {})[name] || {};

/** Views, carts and purchases in each window. */
export function productActivity(p) {
  return groupedBars(PRODUCT_WINDOWS, [
    { name: "views", values: PRODUCT_WINDOWS.map((w) => windowOf(p, w).views), color: COLORS.grey },
    { name: "add to cart", values: PRODUCT_WINDOWS.map((w) => windowOf(p, w).add_to_cart), color: COLORS.teal },
    { name: "purchases", values: PRODUCT_WINDOWS.map((w) => windowOf(p, w).purchases), color: COLORS.green },
  ]);
}

/** Conversion, refund and repurchase rates in each window (a missing rate draws no bar). */
export function productRates(p) {
  return groupedBars(PRODUCT_WINDOWS, [
    { name: "conversion", values: PRODUCT_WINDOWS.map((w) => windowOf(p, w).conversion ?? null), color: COLORS.blue },
    { name: "refund rate", values: PRODUCT_WINDOWS.map((w) => windowOf(p, w).refund_rate ?? null), color: COLORS.red },
    { name: "repurchase rate", values: PRODUCT_WINDOWS.map((w) => windowOf(p, w).repurchase_rate ?? null), color: COLORS.violet },
  ], { format: pct, axisFormat: wholePct });
}

const WINDOW_COLORS = [COLORS.amber, COLORS.blue, COLORS.grey];

/** Buyers of each window by `dimension` of buyers_by (layers, segments, age_bands); `order` sorts the keys. */
function buyersBy(dimension, { order = (keys) => keys.sort(), label = (key) => key } = {}) {
  return (p) => {
    const counts = PRODUCT_WINDOWS.map((w) => (windowOf(p, w).buyers_by || {})[dimension] || {});
    const keys = order([...new Set(counts.flatMap((c) => Object.keys(c)))]);
    if (!keys.length) return nothing("no buyer in 90 days");
    return groupedBars(keys.map(label), PRODUCT_WINDOWS.map((w, i) => ({ name: w, values: keys.map((k) => counts[i][k] || 0), color: WINDOW_COLORS[i] })));
  };
}

const byLayer = (keys) => keys.sort((x, y) => ((LAYER_ORDER.indexOf(x) + 1 || 99) - (LAYER_ORDER.indexOf(y) + 1 || 99)) || x.localeCompare(y));

/** Buyers by value layer at their purchase, layers from high value down. */
export const productLayers = buyersBy("layers", { order: byLayer, label: (key) => LAYER_NAMES[key] || key });
/** Buyers by behaviour segment id at their purchase. */
export const productSegments = buyersBy("segments");
/** Buyers by age band. */
export const productAgeBands = buyersBy("age_bands");

export const PRODUCT_VIEWS = [
  { id: "product-activity", title: "Views, carts, purchases", note: "events per window", option: productActivity },
  { id: "product-rates", title: "Rates", note: "conversion, refund, repurchase", option: productRates },
  { id: "product-layers", title: "Buyers by value layer", note: "distinct buyers per window", option: productLayers },
  { id: "product-segments", title: "Buyers by segment", note: "distinct buyers per window", option: productSegments },
  { id: "product-ages", title: "Buyers by age band", note: "distinct buyers per window", option: productAgeBands },
];

/** The windows table's columns: [heading, field of a window, how it is written]. */
export const PRODUCT_COLUMNS = [
  ["views", "views", fmt], ["carts", "add_to_cart", fmt], ["favorites", "favorites", fmt], ["purchases", "purchases", fmt],
  ["GMV", "gmv", money], ["conversion", "conversion", pct], ["refunds", "refunds", fmt], ["refund rate", "refund_rate", pct],
  ["buyers", "buyers", fmt], ["repurchase rate", "repurchase_rate", pct],
];

/** The windows table: per window, [field path, text] of each column (field paths as in the portrait JSON). */
export const productRows = (p) => PRODUCT_WINDOWS.map((w) => PRODUCT_COLUMNS.map(([, field, write]) => [`windows.${w}.${field}`, write(windowOf(p, w)[field])]));
