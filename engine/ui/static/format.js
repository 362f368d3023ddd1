// Readable numbers: currency, units, thousands separators, relative times.
const usdBig = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 2 });
const num = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const num1 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

/** Dollars: cents for amounts of a dollar or more, three significant digits below. */
export function usd(v) {
  if (v == null || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a === 0) return "$0.00";
  if (a >= 1) return usdBig.format(v);
  const digits = Math.min(10, Math.max(2, 2 - Math.floor(Math.log10(a))));
  return (v < 0 ? "-$" : "$") + a.toFixed(digits);
}
export const int = (v) => (v == null ? "–" : num.format(v));
export const pct = (v) => (v == null ? "–" : `${num1.format(v * 100)} %`);
export function ms(v) {
  if (v == null) return "–";
  if (v >= 1000) return `${num1.format(v / 1000)} s`;
  return `${v >= 10 ? num.format(v) : v.toFixed(2)} ms`;
}
export function bytes(v) {
  if (v == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i ? num1.format(v) : num.format(v)} ${units[i]}`;
}
export function seconds(v) {
  if (v == null) return "never";
  if (v % 86400 === 0) return `${v / 86400} d`;
  if (v % 3600 === 0) return `${v / 3600} h`;
  return `${num.format(v)} s`;
}
const rtf = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
/** "12 seconds ago" from a unix timestamp in seconds. */
export function ago(ts, now = Date.now() / 1000) {
  const d = ts - now;
  const a = Math.abs(d);
  if (a < 60) return rtf.format(Math.round(d), "second");
  if (a < 3600) return rtf.format(Math.round(d / 60), "minute");
  if (a < 86400) return rtf.format(Math.round(d / 3600), "hour");
  return rtf.format(Math.round(d / 86400), "day");
}
export const iso = (ts) => new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
