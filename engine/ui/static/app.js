// The thrifty dashboard: plain ES modules, no build. Every number comes from the admin JSON routes; the
// session lives in an HTTP-only cookie, and changes carry the session's CSRF token in x-thrifty-csrf.
import { lines, meter, sparkline } from "./charts.js";
import { ago, bytes, int, iso, ms, pct, seconds, usd } from "./format.js";

const $ = (id) => document.getElementById(id);
const state = { csrf: null, panel: "overview", timer: null, busy: false, again: false, open: new Set(), filter: {} };

/** An element: h("td", {class: "num"}, "text", child). Text is always text (never parsed as HTML). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : String(c));
  return el;
}
/** A figure whose raw value is kept in data-value (the tests compare it with the ledger). */
const val = (key, raw, text) => h("output", { "data-k": key, "data-value": raw ?? "" }, text);

function table(cols, rows, opts = {}) {
  const head = h("tr", {}, cols.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
  const body = rows.map((r, i) => {
    const tr = h("tr", opts.rowAttrs ? opts.rowAttrs(r, i) : {},
      cols.map((c) => h("td", { class: c.num ? "num" : null }, c.cell(r))));
    return opts.after ? [tr, opts.after(r, i)] : tr;
  });
  return h("div", { class: "scroll" },
    h("table", {}, h("thead", {}, head), h("tbody", {}, rows.length ? body.flat().filter(Boolean)
      : h("tr", {}, h("td", { colspan: cols.length, class: "empty" }, opts.empty || "nothing yet")))));
}

function say(text, kind = "info") {
  const s = $("status");
  s.textContent = text;
  s.dataset.kind = kind;
}

// ------------------------------------------------------------------------------------------ API
class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}
async function api(path, opts = {}) {
  const headers = { accept: "application/json", ...(opts.headers || {}) };
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  if (opts.method && opts.method !== "GET" && state.csrf) headers["x-thrifty-csrf"] = state.csrf;
  const r = await fetch(path, { method: opts.method || "GET", headers, credentials: "same-origin",
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  const data = await r.json().catch(() => ({}));
  if (r.status === 401) { signedOut(); throw new HttpError(401, data.error?.message || "not signed in"); }
  if (!r.ok) throw new HttpError(r.status, data.error?.message || `HTTP ${r.status}`);
  return data;
}
const win = () => $("window").value;

// ------------------------------------------------------------------------------------------ session
function signedOut() {
  state.csrf = null;
  clearTimeout(state.timer);
  for (const p of document.querySelectorAll(".panel")) p.hidden = true;
  $("nav").hidden = $("tools").hidden = true;
  $("login").hidden = false;
  $("login-key").focus();
}
async function signedIn(session) {
  state.csrf = session.csrf;
  $("who").textContent = session.actor;
  $("login").hidden = true;
  $("nav").hidden = $("tools").hidden = false;
  await show(location.hash.slice(1) || "overview");
}
$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  const key = $("login-key").value;
  $("login-key").value = "";
  const r = await fetch("/ui/login", { method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json" }, body: JSON.stringify({ key }) });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) { $("login-error").textContent = data.error?.message || `HTTP ${r.status}`; return; }
  await signedIn(data);
});
$("logout").addEventListener("click", async () => {
  await fetch("/ui/logout", { method: "POST", credentials: "same-origin", headers: { "x-thrifty-csrf": state.csrf || "" } });
  signedOut();
  say("Signed out.");
});

// ------------------------------------------------------------------------------------------ panels
const panels = { overview, spend, cache, requests, providers, controls, audit };

async function show(name) {
  if (!panels[name]) name = "overview";
  if (name !== state.panel) say("");  // a message belongs to the panel it came from
  state.panel = name;
  for (const p of Object.keys(panels)) $(p).hidden = p !== name;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.panel === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  await refresh(true);
}
async function refresh(first = false) {
  clearTimeout(state.timer);
  if (!state.csrf) return;
  if (state.busy) { state.again = true; return; }  // after the load in flight: another, for what changed
  state.busy = true;
  const panel = state.panel;
  try {
    await panels[panel](first);
    $(panel).dataset.loaded = String(Date.now());
    if ($("status").dataset.kind === "error") say("");
  } catch (e) {
    if (e.status !== 401) say(`Could not load ${panel}: ${e.message}`, "error");
  } finally { state.busy = false; }
  if (state.again) { state.again = false; return refresh(true); }
  const every = Number($("refresh").value);
  // Controls are forms: they are not redrawn under the user's fingers.
  if (every && state.csrf && state.panel !== "controls") state.timer = setTimeout(refresh, every);
}
window.addEventListener("hashchange", () => state.csrf && show(location.hash.slice(1)));
$("window").addEventListener("change", () => refresh(true));
$("refresh").addEventListener("change", () => refresh());

/** "figures as of 20 seconds ago" when a result is older than the refresh (costly aggregations are kept
 * longer: the server spends at most a twentieth of a core on them). */
function asof(id, d) {
  const age = Date.now() / 1000 - (d.computed_at || Date.now() / 1000);
  $(id).textContent = age > 2.5 ? `Figures as of ${ago(d.computed_at)}: on a ledger this size they are recomputed every ${Math.round(d.compute_s * 20)} s.` : "";
}

function card(key, title, raw, text, series, note) {
  return h("article", { class: "card", "data-card": key },
    h("h3", {}, title), h("p", { class: "big" }, val(key, raw, text)),
    series ? sparkline(series, `${title} over the window`) : null,
    note ? h("p", { class: "note" }, note) : null);
}

async function overview() {
  const d = await api(`/admin/overview?window=${win()}`);
  asof("ov-asof", d);
  const t = d.totals, s = d.series;
  const daily = d.budgets.filter((b) => b.period === "daily");
  const monthly = d.budgets.filter((b) => b.period === "monthly");
  const limits = (rows) => rows.length ? rows.map((b) => `${b.subject}: ${usd(b.spend_usd)} of ${usd(b.hard_usd ?? b.soft_usd)}`).join("; ") : "no budget set";
  $("ov-cards").replaceChildren(
    card("spend_today", "Spend today", d.spend.today_usd, usd(d.spend.today_usd), s.spend_usd, limits(daily)),
    card("spend_month", "Spend this month", d.spend.month_usd, usd(d.spend.month_usd), null, limits(monthly)),
    card("saved_cache", "Saved by the cache", t.saved_usd, usd(t.saved_usd), s.saved_usd),
    card("saved_routing", "Saved by routing", t.routing_saved_usd, usd(t.routing_saved_usd), s.routing_saved_usd,
      d.reference_model ? `against always ${d.reference_model}` : "no routed requests"),
    card("requests", "Requests", t.requests, int(t.requests), s.requests),
    card("hit_rate", "Cache hit rate", t.hit_rate, pct(t.hit_rate), s.requests.map((n, i) => n ? (s.exact[i] + s.hit[i]) / n : 0)),
    card("error_rate", "Error rate", t.error_rate, pct(t.error_rate), s.requests.map((n, i) => n ? s.errors[i] / n : 0)),
    card("overhead_p50", "Added latency p50", t.overhead_p50, ms(t.overhead_p50), s.overhead_p50),
    card("overhead_p99", "Added latency p99", t.overhead_p99, ms(t.overhead_p99), s.overhead_p99),
  );
  $("ov-budgets").replaceChildren(table([
    { label: "Budget", cell: (b) => b.subject },
    { label: "Period", cell: (b) => `${b.period} (${b.window})` },
    { label: "Spent", num: true, cell: (b) => val(`budget:${b.subject}:${b.period}`, b.spend_usd, usd(b.spend_usd)) },
    { label: "Soft", num: true, cell: (b) => usd(b.soft_usd) },
    { label: "Hard", num: true, cell: (b) => usd(b.hard_usd) },
    { label: "Against limits", cell: (b) => meter(b.spend_usd, b.soft_usd, b.hard_usd, `${b.subject} ${b.period}: ${usd(b.spend_usd)} spent`) },
    { label: "Status", cell: (b) => h("span", { class: `pill ${b.status}` }, b.status) },
  ], d.budgets, { empty: "No budgets configured: set them under Controls." }));
}

async function spend() {
  const d = await api(`/admin/spend?window=${win()}`);
  asof("sp-asof", d);
  const names = { model: "By model", provider: "By provider", tenant: "By tenant", key: "By virtual key" };
  const parts = Object.entries(names).map(([dim, title]) => h("div", { class: "block" }, h("h3", {}, title),
    table([
      { label: dim, cell: (r) => r.key || "(none)" },
      { label: "Requests", num: true, cell: (r) => int(r.requests) },
      { label: "Spend", num: true, cell: (r) => val(`spend:${dim}:${r.key}`, r.spend_usd, usd(r.spend_usd)) },
      { label: "Over time", cell: (r) => sparkline(r.series, `${r.key} spend over time`) },
    ], d.by[dim])));
  parts.push(h("div", { class: "block wide" }, h("h3", {}, "Top prompts by cost"), d.content_logging
    ? table([
      { label: "Prompt", cell: (r) => h("span", { class: "text" }, r.prompt) },
      { label: "Requests", num: true, cell: (r) => int(r.requests) },
      { label: "Spend", num: true, cell: (r) => usd(r.spend_usd) },
    ], d.top_prompts)
    : h("p", { class: "hint" }, "Content logging is off (log_content: false): prompts are not kept.")));
  $("sp-body").replaceChildren(h("div", { class: "grid" }, parts));
}

async function cache() {
  const [o, ns] = await Promise.all([api(`/admin/overview?window=${win()}`), api("/admin/cache/namespaces")]);
  asof("ca-asof", o);
  const t = o.totals, s = o.series, c = ns.stats, st = ns;
  const served = t.exact + t.hit;
  $("ca-cards").replaceChildren(
    card("ca_hit_rate", "Hit rate", t.hit_rate, pct(t.hit_rate), null, `${int(t.exact)} exact, ${int(t.hit)} semantic, ${int(t.miss)} misses`),
    card("ca_entries", "Entries", c.entries, int(c.entries)),
    card("ca_bytes", "Size", c.bytes, bytes(c.bytes)),
    card("ca_saved", "Saved", t.saved_usd, usd(t.saved_usd), s.saved_usd, served ? `${usd(t.saved_usd / served)} a hit` : null),
  );
  const rate = (k) => s.requests.map((n, i) => (n ? s[k][i] / n : 0));
  $("ca-chart").replaceChildren(lines([
    { name: "exact", values: rate("exact"), cls: "a" }, { name: "semantic", values: rate("hit"), cls: "b" },
  ], "cache hit rate over time", pct));
  $("ca-spaces").replaceChildren(table([
    { label: "Space", cell: (r) => r.space },
    { label: "Entries", num: true, cell: (r) => val(`entries:${r.space}`, r.entries, int(r.entries)) },
    { label: "On disk", num: true, cell: (r) => bytes(r.bytes) },
    { label: "", cell: (r) => h("button", { type: "button", class: "danger", onclick: () => purge(r) }, `Purge ${r.space}`) },
  ], ns.spaces, { empty: "The cache is empty." }), ns.complete ? "" : h("p", { class: "hint" },
    "Counted over the first 200,000 entries of the cache."));
  // Per (tenant, namespace) quality from /admin/stats: the shadow + feedback estimate of the false-hit
  // rate with its 95 % Wilson interval, where labels exist.
  const quality = (st.quality || []).filter((q) => q.labelled);
  $("ca-false").replaceChildren(h("h3", {}, "Estimated false-hit rate"), quality.length
    ? table([
      { label: "Space", cell: (q) => (String(q.namespace).includes("/") ? q.namespace : `${q.tenant ?? ""}/${q.namespace ?? ""}`) },
      { label: "Hit rate", num: true, cell: (q) => pct(q.hit_rate) },
      { label: "Labels", num: true, cell: (q) => int(q.labelled) },
      { label: "False hits", num: true, cell: (q) => val(`false:${q.tenant}/${q.namespace}`, q.false_hit_rate, pct(q.false_hit_rate)) },
      { label: "95 % interval", cell: (q) => (q.false_hit_interval ? `${pct(q.false_hit_interval[0])} – ${pct(q.false_hit_interval[1])}` : "–") },
    ], quality)
    : h("p", { class: "hint" }, "No estimate yet: it needs shadow or feedback labels (POST /v1/feedback)."));
}
async function purge(r) {
  if (!confirm(`Delete every entry of ${r.space}?`)) return;
  const body = r.shared ? { namespace: r.namespace, shared: true } : { tenant: r.tenant, namespace: r.namespace };
  try {
    const d = await api("/admin/cache/purge", { method: "POST", body });
    say(`Purged ${int(d.purged)} entries of ${r.space}.`);
    await api("/admin/cache/namespaces?fresh=1");
    await refresh(true);
  } catch (e) { say(`Purge failed: ${e.message}`, "error"); }
}
$("probe-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("probe-error").textContent = "";
  const body = { prompt: $("probe-prompt").value, tenant: $("probe-tenant").value || "default",
    model: $("probe-model").value || "auto" };
  if ($("probe-ns").value) body.namespace = $("probe-ns").value;
  try {
    const d = await api("/admin/cache/probe", { method: "POST", body });
    $("probe-out").replaceChildren(
      h("p", {}, "Would be served: ", h("strong", { "data-k": "would_serve" }, d.would_serve),
        ` · space ${d.space} · first bar ${d.first_bar} · verifier threshold ${d.threshold}`),
      table([
        { label: "Cached prompt", cell: (c) => h("span", { class: "text" }, c.text) },
        { label: "Model", cell: (c) => c.model },
        { label: "Similarity", num: true, cell: (c) => c.similarity.toFixed(4) },
        { label: "Verdict", cell: (c) => h("span", { class: `pill ${c.accept ? "ok" : "reject"}` }, c.accept ? "accept" : "refuse") },
        { label: "Reason", cell: (c) => c.reason + (c.considered ? "" : " (below the first bar: not judged)") },
      ], d.candidates, { empty: "No entry in this prompt's partition." }));
  } catch (e) { $("probe-error").textContent = e.message; }
});

async function requests() {
  const q = new URLSearchParams(Object.entries(state.filter).filter(([, v]) => v));
  q.set("limit", "100");
  const d = await api(`/admin/requests?${q}`);
  const now = Date.now() / 1000;
  $("rq-body").replaceChildren(table([
    { label: "When", cell: (r) => h("time", { datetime: new Date(r.ts * 1000).toISOString(), title: iso(r.ts) }, ago(r.ts, now)) },
    { label: "Tenant", cell: (r) => r.tenant + (r.virtual_key ? ` / ${r.virtual_key}` : "") },
    { label: "Model", cell: (r) => r.model || r.route || "–" },
    { label: "Provider", cell: (r) => r.provider || "–" },
    { label: "Cache", cell: (r) => h("span", { class: `pill ${r.cache}` }, r.cache) },
    { label: "Cost", num: true, cell: (r) => val(`cost:${r.request_id}`, r.cost_usd, usd(r.cost_usd)) },
    { label: "Latency", num: true, cell: (r) => ms(r.latency_ms) },
    { label: "Stages", cell: (r) => Object.entries(r.stages || {}).map(([k, v]) => `${k} ${ms(v)}`).join(" · ") },
    { label: "Error", cell: (r) => (r.status >= 400 ? `${r.status} ${r.error_class || ""}` : "") },
    { label: "", cell: (r) => h("button", { type: "button", "aria-expanded": String(state.open.has(r.request_id)),
      "aria-controls": `why-${r.request_id}`, onclick: () => toggle(r.request_id) }, "Why?") },
  ], d.data, {
    rowAttrs: (r) => ({ "data-request": r.request_id, class: r.status >= 400 ? "failed" : null }),
    after: (r) => (state.open.has(r.request_id) ? h("tr", { id: `why-${r.request_id}`, class: "detail" },
      h("td", { colspan: 10 }, explain(r))) : null),
    empty: "No request matches.",
  }));
}
function toggle(id) {
  if (state.open.has(id)) state.open.delete(id); else state.open.add(id);
  refresh();
}
function explain(r) {
  const parts = [h("p", {}, `Request ${r.request_id}`, r.client_request_id ? ` (x-request-id ${r.client_request_id})` : "",
    ` · ${iso(r.ts)} · ${int(r.prompt_tokens)} prompt + ${int(r.completion_tokens)} completion tokens`,
    r.attempts > 1 ? ` · ${r.attempts} attempts` : "", r.budget_action ? ` · budget ${r.budget_action}` : "")];
  const w = r.routing;
  if (!w) parts.push(h("p", { class: "hint" }, r.cache === "exact" || r.cache === "hit"
    ? "Served from the cache: no routing decision." : "No routing decision recorded (a pinned model or an early error)."));
  else {
    parts.push(h("p", {}, `Chose ${w.chosen} — policy ${w.policy}, task ${w.task}.`));
    parts.push(table([
      { label: "Candidate", cell: (c) => c[0] },
      { label: "Predicted quality", num: true, cell: (c) => c[1].toFixed(3) },
      { label: "Expected cost", num: true, cell: (c) => usd(c[2]) },
    ], w.candidates));
    if (w.dropped?.length) parts.push(h("ul", { class: "dropped" }, w.dropped.map(([m, why]) => h("li", {}, `${m}: ${why}`))));
  }
  if ("prompt" in r) {
    parts.push(h("h4", {}, "Prompt"), h("pre", {}, r.prompt ?? ""), h("h4", {}, "Answer"), h("pre", {}, r.answer ?? ""));
  }
  return h("div", { class: "why" }, parts);
}
$("rq-filter").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.filter = Object.fromEntries(new FormData(ev.target));
  $("rq-error").textContent = "";
  refresh(true).catch((e) => { $("rq-error").textContent = e.message; });
});

async function providers() {
  const d = await api(`/admin/providers?window=${win()}`);
  asof("pv-asof", d);
  $("pv-body").replaceChildren(
    h("p", {}, d.open_circuits.length ? h("strong", { class: "bad" }, `Open circuits: ${d.open_circuits.join(", ")}`) : "No open circuit."),
    table([
      { label: "Provider", cell: (r) => r.provider },
      { label: "Answers (window)", num: true, cell: (r) => int(r.requests) },
      { label: "Failed attempts*", num: true, cell: (r) => int(r.failed_attempts) },
      { label: "Error rate*", num: true, cell: (r) => pct(r.error_rate) },
    ], d.providers),
    h("h3", {}, "Deployments"),
    table([
      { label: "Deployment", cell: (r) => r.deployment },
      { label: "Answers (window)", num: true, cell: (r) => val(`dep:${r.deployment}`, r.requests, int(r.requests)) },
      { label: "Upstream p50", num: true, cell: (r) => ms(r.upstream_ms_p50) },
      { label: "Upstream p99", num: true, cell: (r) => ms(r.upstream_ms_p99) },
      { label: "Retried", num: true, cell: (r) => int(r.retried) },
      { label: "Failed attempts*", num: true, cell: (r) => int(r.failed_attempts) },
      { label: "Error rate*", num: true, cell: (r) => pct(r.error_rate) },
      { label: "Circuit", cell: (r) => h("span", { class: `pill ${r.circuit === "closed" ? "ok" : "reject"}` }, r.circuit) },
    ], d.deployments),
    h("p", { class: "hint" }, "* since this worker started (every attempt, including those a retry or fallback recovered)."),
    h("h3", {}, "Recent upstream errors"),
    table([
      { label: "When", cell: (r) => h("time", { title: iso(r.ts) }, ago(r.ts)) },
      { label: "Tenant", cell: (r) => r.tenant },
      { label: "Status", num: true, cell: (r) => r.status },
      { label: "Attempts", cell: (r) => h("ol", { class: "attempts" }, r.attempts.map((a) =>
        h("li", {}, [a.deployment, a.kind, a.status, a.error || a.message].filter((x) => x != null && x !== "").join(" · ")))) },
    ], d.recent_errors, { empty: "No failed request in the window." }));
}

// ------------------------------------------------------------------------------------------ controls
const list = (v) => v.split(",").map((x) => x.trim()).filter(Boolean);
const numOrNull = (v) => (v.trim() === "" ? null : Number(v));

function field(label, input, hint) {
  const id = `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", {}, hint) : null);
}
function select(name, options, value) {
  return h("select", { name }, options.map((o) => h("option", { value: o, selected: o === value }, o)));
}
function input(name, value, attrs = {}) { return h("input", { name, value: value ?? "", ...attrs }); }

function form(title, fields, toPatch, key) {
  const err = h("p", { class: "error", role: "alert" });
  const f = h("form", { class: "control", "data-control": key }, h("h3", {}, title), fields,
    h("button", { type: "submit" }, "Apply"), err);
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    let patch;
    try { patch = toPatch(new FormData(f)); } catch (e) { err.textContent = e.message; return; }
    try {
      const d = await api("/admin/controls", { method: "PATCH", body: patch });
      say(d.changed.length ? `Applied: ${d.changed.join(", ")}` : "Nothing changed.");
      await controls();
    } catch (e) { err.textContent = e.message; }
  });
  return f;
}
function budgetFields(b) {
  const l = (p, k) => (b && b[p] && b[p][k] != null ? b[p][k] : "");
  const n = { inputmode: "decimal", placeholder: "none" };
  return [field("Daily soft (USD)", input("daily_soft", l("daily_usd", "soft"), n)),
    field("Daily hard (USD)", input("daily_hard", l("daily_usd", "hard"), n)),
    field("Monthly soft (USD)", input("monthly_soft", l("monthly_usd", "soft"), n)),
    field("Monthly hard (USD)", input("monthly_hard", l("monthly_usd", "hard"), n)),
    field("At the hard limit", select("on_hard", ["reject", "downgrade"], b?.on_hard || "reject"))];
}
function budgetOf(fd) {
  const lim = (p) => {
    const soft = numOrNull(fd.get(`${p}_soft`)), hard = numOrNull(fd.get(`${p}_hard`));
    return soft == null && hard == null ? null : { soft, hard };
  };
  const daily = lim("daily"), monthly = lim("monthly");
  if (!daily && !monthly) return null;
  return { daily_usd: daily, monthly_usd: monthly, on_hard: fd.get("on_hard") };
}

async function controls() {
  const d = await api("/admin/controls");
  const s = d.settings, ch = d.choices;
  $("ct-path").textContent = d.path;
  const rules = s.routing.rules || [];
  const pref = rules.find((r) => r.name === "preferred-models");
  const forms = [
    form("Routing", [
      field("Policy", select("policy", ch.policy, s.routing.policy)),
      field("Quality target", input("quality_target", s.routing.quality_target, { inputmode: "decimal" }), "0 to 1"),
    ], (fd) => ({ routing: { policy: fd.get("policy"), quality_target: Number(fd.get("quality_target")) } }), "routing"),
    form("Cache", [
      field("Mode", select("mode", ch.cache_mode, s.cache.mode)),
      field("Threshold", input("threshold", s.cache.threshold, { inputmode: "decimal", placeholder: "preset" }), "empty: the preset's"),
      field("TTL (seconds)", input("ttl_s", s.cache.ttl_s, { inputmode: "numeric", placeholder: "never" }), `now ${seconds(s.cache.ttl_s)}`),
      s.cache.adaptive ? field("Adaptive thresholds", select("adaptive", ["off", "on"], s.cache.adaptive.enabled ? "on" : "off"),
        "per-entry thresholds learned from labels, under the error bound") : null,
      s.cache.adaptive ? field("Error bound", input("delta", s.cache.adaptive.delta, { inputmode: "decimal" }),
        "the largest acceptable probability that a served answer is wrong, in (0, 0.5)") : null,
    ], (fd) => {
      const cache = { mode: fd.get("mode"), threshold: numOrNull(fd.get("threshold")), ttl_s: numOrNull(fd.get("ttl_s")) };
      if (s.cache.adaptive) cache.adaptive = { enabled: fd.get("adaptive") === "on", delta: Number(fd.get("delta")) };
      return { cache };
    }, "cache"),
    form("Preferred models", [
      field("Models, best first", input("prefer", (pref?.prefer || []).join(", "), { placeholder: "e.g. gpt-4o-mini, claude-haiku-4-5" }),
        "tried before the others whenever they qualify (a rule named preferred-models)"),
    ], (fd) => {
      const others = rules.filter((r) => r.name !== "preferred-models");
      const p = list(fd.get("prefer"));
      return { routing: { rules: p.length ? [...others, { name: "preferred-models", prefer: p }] : others } };
    }, "preferences"),
    form("Routing rules", [
      field("Rules (JSON list)", h("textarea", { name: "rules", rows: 6, spellcheck: "false" }, JSON.stringify(rules, null, 1)),
        'e.g. [{"task": "code", "only": ["gpt-4o"]}] — fields: task, tenant, prefer, only, deny, policy, quality_target, name'),
    ], (fd) => {
      try { return { routing: { rules: JSON.parse(fd.get("rules") || "[]") } }; }
      catch (e) { throw new Error(`rules: not valid JSON: ${e.message}`); }
    }, "rules"),
  ];
  for (const [name, t] of Object.entries(s.tenants)) {
    forms.push(form(`Tenant ${name}: budget`, budgetFields(t.budget), (fd) => ({ tenants: { [name]: { budget: budgetOf(fd) } } }), `budget:tenant:${name}`));
    forms.push(form(`Tenant ${name}: models`, [
      field("Allow only", input("allow", t.allow_models.join(", "), { placeholder: "any" })),
      field("Deny", input("deny", t.deny_models.join(", "), { placeholder: "none" })),
    ], (fd) => ({ tenants: { [name]: { allow_models: list(fd.get("allow")), deny_models: list(fd.get("deny")) } } }), `models:${name}`));
  }
  for (const [name, k] of Object.entries(s.keys)) {
    forms.push(form(`Key ${name} (${k.tenant}): budget`, budgetFields(k.budget), (fd) => ({ keys: { [name]: { budget: budgetOf(fd) } } }), `budget:key:${name}`));
  }
  $("ct-body").replaceChildren(h("div", { class: "grid" }, forms),
    h("details", {}, h("summary", {}, "Models you can name"), h("p", { class: "text" }, ch.models.join(", "))));
}

async function audit() {
  const d = await api("/admin/audit?limit=200");
  const show = (v) => (v == null ? "–" : typeof v === "object" ? JSON.stringify(v) : String(v));
  $("au-body").replaceChildren(table([
    { label: "When", cell: (e) => h("time", { title: iso(e.ts), datetime: new Date(e.ts * 1000).toISOString() }, ago(e.ts)) },
    { label: "Who", cell: (e) => e.actor },
    { label: "What", cell: (e) => `${e.action} ${e.target}` },
    { label: "Old", cell: (e) => h("code", {}, show(e.old)) },
    { label: "New", cell: (e) => h("code", {}, show(e.new)) },
  ], d.data, { rowAttrs: (e) => ({ "data-target": e.target }), empty: "No change made at run time yet." }));
}

// ------------------------------------------------------------------------------------------ start
(async () => {
  try {
    const r = await fetch("/ui/session", { credentials: "same-origin" });
    if (r.ok) await signedIn(await r.json()); else signedOut();
  } catch { signedOut(); }
})();
