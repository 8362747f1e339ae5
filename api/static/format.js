// How the dashboard writes numbers, shares, money and instants (en-US digits, UTC instants).

export const isNum = (x) => typeof x === "number" && Number.isFinite(x);

/** A value as text: thousands separators, at most `digits` decimals, "—" for missing. */
export function fmt(x, digits = 2) {
  if (x === null || x === undefined) return "—";
  if (isNum(x)) return Number.isInteger(x) ? x.toLocaleString("en-US") : x.toLocaleString("en-US", { maximumFractionDigits: digits });
  if (typeof x === "boolean") return x ? "yes" : "no";
  if (typeof x === "object") return JSON.stringify(x);
  return String(x);
}

/** A share in [0, 1] as a percentage with one decimal. */
export const pct = (x) => (isNum(x) ? `${(x * 100).toFixed(1)}%` : "—");

/** An amount with two decimals. */
export const money = (x) => (isNum(x) ? x.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) : "—");

/** A bound of a value range, short: 500, 2k, 1M. */
export function short(x) {
  if (!isNum(x)) return "—";
  for (const [size, unit] of [[1e9, "B"], [1e6, "M"], [1e3, "k"]]) {
    if (Math.abs(x) >= size) return `${fmt(x / size, 1)}${unit}`;
  }
  return fmt(x, 2);
}

/** An ISO instant as "YYYY-MM-DD HH:MM:SSZ". */
export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export const hourLabel = (h) => `${String(h).padStart(2, "0")}:00`;
export const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
