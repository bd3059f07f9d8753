// Inline SVG charts, no library: a horizontal bar chart is all the usage page needs.
// Labels are set with textContent (model names and key ids come from the server).

const SVG = "http://www.w3.org/2000/svg";
const ROW = 26; // px per bar
const LABEL = 140; // px of label column
const WIDTH = 560;

function node(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function short(label, max = 20) {
  return label.length > max ? `${label.slice(0, max - 1)}…` : label;
}

function amount(value) {
  return Number.isInteger(value) ? value.toLocaleString("en") : value.toPrecision(4);
}

/**
 * Bars for [{label, value}], scaled to the largest value; one <rect class="bar"> each,
 * with a <title> giving the exact figure. Scales with its container (viewBox).
 */
export function barChart(items, { title, unit = "" }) {
  const height = Math.max(items.length, 1) * ROW + 8;
  const svg = node("svg", { viewBox: `0 0 ${WIDTH} ${height}`, role: "img",
    "aria-label": title, class: "biz-chart", width: "100%", preserveAspectRatio: "xMinYMin meet" });
  svg.style.maxWidth = `${WIDTH * 1.25}px`; // CSSOM, which the page's CSP allows
  svg.append(node("title", {}, title));
  const top = Math.max(...items.map((i) => i.value), 0);
  const room = WIDTH - LABEL - 90;
  items.forEach((item, i) => {
    const y = 4 + i * ROW;
    const w = top > 0 ? Math.max((item.value / top) * room, item.value > 0 ? 2 : 0) : 0;
    const bar = node("rect", { class: "biz-bar", x: LABEL, y, width: w.toFixed(1),
      height: ROW - 8, rx: 2, fill: "currentColor", opacity: 0.75, "data-value": item.value });
    bar.append(node("title", {}, `${item.label}: ${amount(item.value)} ${unit}`.trim()));
    svg.append(
      node("text", { x: LABEL - 6, y: y + ROW / 2, "text-anchor": "end", "font-size": 12,
        "dominant-baseline": "middle", fill: "currentColor" }, short(item.label)),
      bar,
      node("text", { x: LABEL + w + 6, y: y + ROW / 2, "font-size": 12,
        "dominant-baseline": "middle", fill: "currentColor" },
        amount(item.value)));
  });
  return svg;
}

/** Sum `value(row)` by `key(row)`, largest first (days: in date order). */
export function totals(rows, key, value, byKey = false) {
  const sums = new Map();
  for (const row of rows) sums.set(key(row), (sums.get(key(row)) ?? 0) + value(row));
  const items = [...sums].map(([label, v]) => ({ label, value: v }));
  return byKey ? items.sort((a, b) => (a.label < b.label ? -1 : 1))
    : items.sort((a, b) => b.value - a.value);
}
