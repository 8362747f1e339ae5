// The dashboard's charts: one small function per chart, from an endpoint's JSON to an ECharts option.
//
// OVERVIEW_VIEWS lists the overview's cards. Each names the endpoint it draws (`source`); the page
// fetches every source once per refresh and hands its JSON to the cards drawing it, so a chart of
// another endpoint is one entry here and one option function. A card whose source fails says so
// on the card and leaves the others alone.

import { bars, columns, COLORS, groupedBars, nothing } from "./charts.js";
import { fmt, hourLabel, isNum, pct, short, WEEKDAYS } from "./format.js";

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
