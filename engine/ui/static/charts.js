// Hand-written SVG charts: sparklines, multi-line charts and budget meters. No library.
const NS = "http://www.w3.org/2000/svg";

function svg(w, h, label) {
  const s = document.createElementNS(NS, "svg");
  s.setAttribute("viewBox", `0 0 ${w} ${h}`);
  s.setAttribute("preserveAspectRatio", "none");
  s.setAttribute("role", "img");
  s.setAttribute("aria-label", label);
  return s;
}
function path(points, cls) {
  const p = document.createElementNS(NS, "path");
  p.setAttribute("d", points.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`).join(""));
  p.setAttribute("class", cls);
  p.setAttribute("vector-effect", "non-scaling-stroke");
  return p;
}

/** A sparkline of `values` (a small line with its area). */
export function sparkline(values, label) {
  const w = 120, h = 28, max = Math.max(...values, 0) || 1;
  const s = svg(w, h, label);
  s.setAttribute("class", "spark");
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const pts = values.map((v, i) => [i * step, h - 2 - (v / max) * (h - 4)]);
  if (pts.length) {
    s.append(path([[0, h], ...pts, [pts[pts.length - 1][0], h]], "area"), path(pts, "line"));
  }
  return s;
}

/** Several series on one chart, with a legend: [{name, values, cls}]. */
export function lines(series, label, fmt = String) {
  const wrap = document.createElement("figure");
  wrap.className = "lines";
  const w = 600, h = 140;
  const max = Math.max(0, ...series.flatMap((s) => s.values)) || 1;
  const s = svg(w, h, label);
  for (const f of [0.25, 0.5, 0.75]) s.append(path([[0, h * f], [w, h * f]], "grid"));
  for (const ser of series) {
    const step = ser.values.length > 1 ? w / (ser.values.length - 1) : w;
    s.append(path(ser.values.map((v, i) => [i * step, h - 2 - (v / max) * (h - 6)]), `line ${ser.cls}`));
  }
  const cap = document.createElement("figcaption");
  cap.append(`max ${fmt(max)} · `);
  for (const ser of series) {
    const k = document.createElement("span");
    k.className = `key ${ser.cls}`;
    k.textContent = ser.name;
    cap.append(k, " ");
  }
  wrap.append(s, cap);
  return wrap;
}

/** A horizontal meter of spend against soft and hard limits (markers drawn at each). */
export function meter(spent, soft, hard, label) {
  const top = Math.max(spent, soft || 0, hard || 0) * 1.1 || 1;
  const w = 300, h = 16;
  const s = svg(w, h, label);
  s.setAttribute("class", "meter");
  const rect = (x, width, cls) => {
    const r = document.createElementNS(NS, "rect");
    r.setAttribute("x", x); r.setAttribute("y", 3); r.setAttribute("width", Math.max(0, width));
    r.setAttribute("height", h - 6); r.setAttribute("class", cls);
    return r;
  };
  const over = hard != null && spent >= hard ? "over" : soft != null && spent >= soft ? "warn" : "ok";
  s.append(rect(0, w, "track"), rect(0, (spent / top) * w, `fill ${over}`));
  for (const [v, cls] of [[soft, "soft"], [hard, "hard"]]) {
    if (v == null) continue;
    const l = document.createElementNS(NS, "line");
    const x = (v / top) * w;
    l.setAttribute("x1", x); l.setAttribute("x2", x); l.setAttribute("y1", 0); l.setAttribute("y2", h);
    l.setAttribute("class", `limit ${cls}`);
    s.append(l);
  }
  return s;
}
