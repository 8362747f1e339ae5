// Apache ECharts glue: draw an option into an element (one chart per element, resized with it) and
// the few option shapes the dashboard's views share. The library is the UMD build installed by
// scripts/install-echarts and served at /static/vendor/echarts/echarts.min.js; index.html loads it
// before the modules, as the global `echarts`.
// Tooltips render as rich text inside the canvas: ECharts' HTML tooltips carry inline style
// attributes, which the page's Content-Security-Policy (style-src 'self') refuses.

import { fmt } from "./format.js";

export const COLORS = {
  blue: "#2f6fde", teal: "#0e9aa7", violet: "#7c5cd6", red: "#d6453d", amber: "#d97706", green: "#1f9d55", grey: "#8a94a6",
};
const MUTED = "#6b7380";
// every component an option of this module may set (see draw)
const REPLACED = ["series", "xAxis", "yAxis", "grid", "legend", "title", "tooltip", "visualMap"];

/** True when the chart library was served and loaded. */
export const chartsAvailable = () => typeof window.echarts === "object" && window.echarts !== null;

/** Draw `option` into `target`, replacing what was there; the chart follows the element's size. */
export function draw(target, option) {
  const { echarts } = window;
  let chart = echarts.getInstanceByDom(target);
  if (!chart) {
    chart = echarts.init(target, null, { renderer: "canvas" });
    const observer = new ResizeObserver(() => {
      if (!chart.isDisposed() && target.isConnected) {
        chart.resize();
      } else {
        if (!chart.isDisposed()) chart.dispose();
        observer.disconnect();
      }
    });
    observer.observe(target);
  }
  // the option replaces the previous one, but series, axes and the rest are updated in place (their
  // bars move to the new values) rather than rebuilt, so a refresh does not replay the entry animation
  chart.setOption(option, { replaceMerge: REPLACED });
  return chart;
}

/** Dispose of every chart under `root` (before its elements are replaced). */
export function release(root) {
  for (const node of root.querySelectorAll("[_echarts_instance_]")) window.echarts.dispose(node);
}

/** An option that draws no data, only `text` in the middle. */
export function nothing(text = "nothing yet") {
  return {
    title: { text, left: "center", top: "middle", textStyle: { color: MUTED, fontSize: 13, fontStyle: "italic", fontWeight: "normal" } },
    series: [],
  };
}

function base(format) {
  return {
    animationDuration: 300,
    textStyle: { fontFamily: "system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', sans-serif" },
    grid: { left: 6, right: 18, top: 22, bottom: 4, outerBoundsMode: "same", outerBoundsContain: "axisLabel" },
    tooltip: { trigger: "axis", renderMode: "richText", axisPointer: { type: "shadow" }, valueFormatter: format },
  };
}

const valueAxis = (format) => ({ type: "value", axisLabel: { formatter: format, color: MUTED }, splitLine: { lineStyle: { color: "#eceef2" } } });

/**
 * Vertical bars, one per label. `highlight`: {indexes, text} draws those bars in amber and writes
 * `text` (amber too) in the top right corner, e.g. the evening visit peak and its share.
 */
export function columns(labels, values, { name = "", color = COLORS.blue, format = fmt, axisFormat = format, highlight = null } = {}) {
  if (!values.some((v) => v > 0)) return nothing();
  const marked = new Set(highlight ? highlight.indexes : []);
  const option = {
    ...base(format),
    xAxis: { type: "category", data: labels, axisTick: { alignWithLabel: true }, axisLabel: { color: MUTED } },
    yAxis: valueAxis(axisFormat),
    series: [{
      type: "bar", name, itemStyle: { color, borderRadius: [2, 2, 0, 0] }, barCategoryGap: "25%",
      data: values.map((v, i) => (marked.has(i) ? { value: v, itemStyle: { color: COLORS.amber } } : v)),
    }],
  };
  if (highlight) option.title = { text: highlight.text, right: 18, top: 0, textStyle: { color: COLORS.amber, fontSize: 12, fontWeight: "normal" } };
  return option;
}

/** Horizontal bars, first label on top, each bar labelled with its value. */
export function bars(labels, values, { name = "", color = COLORS.blue, format = fmt, axisFormat = format } = {}) {
  if (!labels.length) return nothing();
  return {
    ...base(format),
    grid: { left: 6, right: 56, top: 6, bottom: 4, outerBoundsMode: "same", outerBoundsContain: "axisLabel" },
    xAxis: { ...valueAxis(axisFormat), axisLabel: { show: false } },
    yAxis: { type: "category", data: labels, inverse: true, axisTick: { show: false }, axisLabel: { color: "#1d2430" } },
    series: [{
      type: "bar", name, data: values, itemStyle: { color, borderRadius: [0, 2, 2, 0] }, barCategoryGap: "30%",
      label: { show: true, position: "right", formatter: ({ value }) => format(value), color: "#1d2430" },
    }],
  };
}

/** Horizontal bars, several series side by side per label (`series`: [{name, values, color}]). */
export function groupedBars(labels, series, { format = fmt, axisFormat = format } = {}) {
  if (!labels.length) return nothing();
  return {
    ...base(format),
    legend: { top: 0, left: 0, itemWidth: 12, itemHeight: 10, textStyle: { color: MUTED } },
    grid: { left: 6, right: 48, top: 28, bottom: 4, outerBoundsMode: "same", outerBoundsContain: "axisLabel" },
    xAxis: valueAxis(axisFormat),
    yAxis: { type: "category", data: labels, inverse: true, axisTick: { show: false }, axisLabel: { color: "#1d2430" } },
    series: series.map(({ name, values, color }) => ({
      type: "bar", name, data: values, itemStyle: { color }, barGap: "10%", barCategoryGap: "28%",
      label: { show: true, position: "right", fontSize: 10, color: MUTED, formatter: ({ value }) => format(value) },
    })),
  };
}

/**
 * A heat map of shares in [0, 1]: `columns` across, `rows` down (first on top), `cells` as [column, row, share]
 * (a missing cell stays blank), each cell labelled with its share and coloured from white to `color`.
 */
export function heatmap(columns, rows, cells, { name = "", color = COLORS.blue, format = fmt } = {}) {
  if (!cells.length) return nothing();
  return {
    ...base(format),
    tooltip: { trigger: "item", renderMode: "richText", formatter: ({ value }) => `${rows[value[1]]}, ${columns[value[0]]}: ${format(value[2])}` },
    grid: { left: 6, right: 12, top: 6, bottom: 34, outerBoundsMode: "same", outerBoundsContain: "axisLabel" },
    xAxis: { type: "category", data: columns, position: "top", splitArea: { show: true }, axisTick: { show: false }, axisLabel: { color: MUTED } },
    yAxis: { type: "category", data: rows, inverse: true, splitArea: { show: true }, axisTick: { show: false }, axisLabel: { color: "#1d2430" } },
    visualMap: {
      type: "continuous", min: 0, max: 1, calculable: false, orient: "horizontal", left: "center", bottom: 0, itemHeight: 120, itemWidth: 10,
      inRange: { color: ["#f4f7fd", color] }, formatter: format, textStyle: { color: MUTED, fontSize: 11 },
    },
    series: [{
      type: "heatmap", name, data: cells, itemStyle: { borderColor: "#fff", borderWidth: 1 },
      label: { show: true, fontSize: 10, formatter: ({ value }) => format(value[2]) },
      emphasis: { itemStyle: { borderColor: "#1d2430" } },
    }],
  };
}
