// cco dashboard: reads the service's JSON endpoints and draws everything itself (SVG, no library).
//
// The idea: /api/stats is tiny and served from the service's ring cache, so it is polled every
// 2 s; everything heavier (projects, models, reports, activity, block, health) is refetched only
// when the snapshot changes, when /api/stream says something happened, or every 30 s. The SSE
// stream gives instant feedback; polling makes the page right even when the stream is down.

const STATS_EVERY_MS = 2000;
const DETAILS_EVERY_MS = 30000;
const HEALTH_EVERY_MS = 10000;
// A request not answered in this time fails (a hung service must not look live), and stats older
// than STALE_MS mark the page stale.
const REQUEST_TIMEOUT_MS = 8000;
const STALE_MS = 10000;
const FEED_PAGE = 50;
const HOURLY_PAGE = 1000;
const HOURLY_MAX_PAGES = 20;
const TIERS = ["opus", "sonnet", "haiku", "other"];
const CALL_TYPES = "api_call,cache_hit,error"; // every call is exactly one of these activity types
const TYPE_LABELS = {
  api_call: "call", cache_hit: "cache hit", error: "error", model_override: "model change", compaction: "compaction",
};
const TZ = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

const $ = (id) => document.getElementById(id);

const hashParams = new URLSearchParams(location.hash.slice(1));
const TOKEN = hashParams.get("token");

const state = {
  project: hashParams.get("project") || "",
  feedType: hashParams.get("type") || "",
  feedProject: hashParams.get("project") || "",
  range: hashParams.get("range") === "30d" ? "30d" : "24h",
  feedLimit: FEED_PAGE,
  stats: null,
  statsKey: "",
  projects: [],
  shortNames: new Map(),
  lastUpdate: null,
  hourly: [],
  daily: [],
  sseOpen: false,
  lastLagging: 0,
  chartLoading: true,
  statsOk: true,
  statsAt: 0, // Date.now() of the last /api/stats answer
  refreshTimer: null,
  refreshing: false,
  refreshAgain: false,
};

// --- fetching -----------------------------------------------------------------------------------

class HttpError extends Error {
  constructor(path, status, body) {
    let reason = body ? body.slice(0, 200) : "";
    try {
      reason = JSON.parse(body).error || reason; // the service's errors are {"error": "one line"}
    } catch {
      // not JSON: keep the text
    }
    super(`${path}: HTTP ${status}${reason ? ` (${reason})` : ""}`);
    this.status = status;
  }
}

// An answer for a selection (project, filters) that has changed since the request was sent.
class Superseded extends Error {}

function selection() {
  return [state.project, state.feedType, state.feedProject, state.feedLimit].join("\n");
}

// getJSON for panels that depend on the selection: a late answer for an old one is dropped.
async function getFor(path) {
  const before = selection();
  const data = await getJSON(path);
  if (before !== selection()) throw new Superseded(path);
  return data;
}

function withToken(path) {
  return TOKEN ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}` : path;
}

async function getJSON(path) {
  const headers = TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};
  let res;
  try {
    res = await fetch(path, { headers, cache: "no-store", signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  } catch (err) {
    if (err.name === "TimeoutError") throw new Error(`${path}: no answer in ${REQUEST_TIMEOUT_MS / 1000} s`);
    throw err;
  }
  if (!res.ok) throw new HttpError(path, res.status, await res.text().catch(() => ""));
  return res.json();
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

// --- formatting ---------------------------------------------------------------------------------

const intFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const cost2 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

function fmtCost(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  // four decimals below $1, unless they would round up to it ($0.99996 -> "$1.00", not "$1.0000")
  return Math.abs(v) >= 0.99995 ? `$${cost2.format(v)}` : `$${v.toFixed(4)}`;
}
function fmtInt(v) {
  return v === null || v === undefined ? "–" : intFmt.format(v);
}
function fmtCompact(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  // each unit from where the one below would round up to 1000 of it (999,950 -> "1.00M", not "1000.0K")
  if (a >= 999.995e6) return `${(v / 1e9).toFixed(2)}B`;
  if (a >= 999.95e3) return `${(v / 1e6).toFixed(2)}M`;
  if (a >= 999.5) return `${(v / 1e3).toFixed(1)}K`;
  return String(Math.round(v));
}
function fmtRate(v) {
  return v === null || v === undefined ? "–" : v.toFixed(2);
}
function fmtPct(v) {
  return v === null || v === undefined || Number.isNaN(v) ? "–" : `${(v * 100).toFixed(1)}%`;
}
function fmtMs(v) {
  if (v === null || v === undefined) return "–";
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 120000) return `${(v / 1000).toFixed(1)} s`;
  return fmtDuration(v / 60000);
}
function fmtDuration(minutes) {
  if (minutes === null || minutes === undefined || Number.isNaN(minutes)) return "–";
  const m = Math.max(0, Math.round(minutes));
  if (m >= 2880) return `${Math.round(m / 1440)} days`;
  return m >= 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : `${m} min`;
}

function parseTime(iso) {
  if (!iso) return null;
  // Timestamps without a zone are UTC (the index stores UTC).
  const d = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}Z`);
  return Number.isNaN(d.getTime()) ? null : d;
}
function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}
const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const shortDateTimeFmt = new Intl.DateTimeFormat(undefined, {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
});
const yearDateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
});
// Another day: its date, with the year when it is not this year's (old history must not look recent).
function fmtDay(d) {
  return d.getFullYear() === new Date().getFullYear() ? shortDateTimeFmt.format(d) : yearDateTimeFmt.format(d);
}
function fmtWhen(d) {
  if (!d) return "–";
  return sameDay(d, new Date()) ? timeFmt.format(d) : fmtDay(d);
}
const clockFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
function fmtClock(d) {
  if (!d) return "–";
  return sameDay(d, new Date()) ? clockFmt.format(d) : fmtDay(d);
}
function fmtAgo(d) {
  if (!d) return "";
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  if (s < 5) return "just now";
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}
function setTime(el, iso) {
  const d = typeof iso === "string" ? parseTime(iso) : iso;
  el.textContent = fmtWhen(d);
  el.dateTime = d ? d.toISOString() : "";
  el.title = d ? `${dateTimeFmt.format(d)} (${fmtAgo(d)})` : "";
}
function localDate(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}
function setValue(id, value, text) {
  const el = $(id);
  el.textContent = text;
  el.dataset.value = value === null || value === undefined ? "" : String(value);
}

function tierOf(model) {
  const low = String(model || "").toLowerCase();
  return TIERS.find((t) => t !== "other" && low.includes(t)) || "other";
}

// Shortest unique tail of each project path ("spotter", "chip/ai-music"), for labels.
function shortNames(names) {
  const out = new Map();
  const parts = new Map(names.map((n) => [n, n.split(/[\\/]/).filter(Boolean)]));
  for (const n of names) {
    const p = parts.get(n);
    let k = 1;
    const tail = (ps, len) => ps.slice(-len).join("/");
    while (k < p.length && names.some((o) => o !== n && tail(parts.get(o), k) === tail(p, k))) k += 1;
    out.set(n, tail(p, k) || n);
  }
  return out;
}
function label(project) {
  // Before the projects list has come: the path's last folder (never the whole path).
  const last = String(project || "").split(/[\\/]/).filter(Boolean).pop();
  return state.shortNames.get(project) || last || project || "–";
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k in node && k !== "list") node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

// --- stats (polled) -----------------------------------------------------------------------------

async function pollStats() {
  try {
    const s = await getJSON("/api/stats");
    const recovered = !state.statsOk;
    state.stats = s;
    state.statsOk = true;
    state.statsAt = Date.now();
    if (recovered) scheduleRefresh(0); // the panels failed while the service was away
    state.lastUpdate = parseTime(s.timestamp) || new Date();
    renderStats();
    setError("stats", "");
    const key = [s.total_requests, s.messages_count, s.last_activity, s.total_cost].join("|");
    if (key !== state.statsKey) {
      state.statsKey = key;
      scheduleRefresh(0);
    }
  } catch (err) {
    state.statsOk = false;
    setError("stats", `Cannot reach the cco service (${err.message}); retrying…`);
  }
  renderConn();
}

function renderStats() {
  const s = state.stats;
  if (!s) return;
  if (!state.project) {
    setValue("total-cost", s.total_cost, fmtCost(s.total_cost));
    setValue("total-tokens", s.total_tokens, fmtInt(s.total_tokens));
    if (todayFromStats()) {
      setValue("today-cost", s.today_cost, fmtCost(s.today_cost));
      setValue("today-tokens", s.today_tokens, fmtInt(s.today_tokens));
    }
    setValue("total-calls", s.total_requests, fmtInt(s.total_requests));
    setValue("failed-calls", s.failed_requests, fmtInt(s.failed_requests));
    setValue("cache-savings", s.cache_savings, fmtCost(s.cache_savings));
    $("avg-latency").textContent = fmtMs(s.avg_response_time_ms);
    $("token-split").textContent =
      `in ${fmtCompact(s.input_tokens)} · out ${fmtCompact(s.output_tokens)} · cache write ` +
      `${fmtCompact(s.cache_creation_tokens)}`;
    $("cache-read").textContent = `${fmtInt(s.cache_read_tokens)} tokens read from cache`;
    const denom = s.input_tokens + s.cache_creation_tokens + s.cache_read_tokens;
    $("cache-hit").textContent = denom ? fmtPct(s.cache_read_tokens / denom) : "–";
  }
  setValue("calls-per-minute", s.calls_per_minute, fmtRate(s.calls_per_minute));
  setValue("cost-per-minute", s.cost_per_minute, fmtCost(s.cost_per_minute));
  $("active-projects").textContent = fmtInt(s.active_projects);
  setTime($("last-activity"), s.last_activity);
  renderUpdated();
}

function renderUpdated() {
  const t = $("last-update");
  if (!state.lastUpdate) return;
  t.textContent = timeFmt.format(state.lastUpdate);
  t.dateTime = state.lastUpdate.toISOString();
  t.title = dateTimeFmt.format(state.lastUpdate);
  $("last-update-ago").textContent = `(${fmtAgo(state.lastUpdate)})`;
  renderConn();
}

function renderConn() {
  const dot = $("conn-dot");
  const text = $("conn-state");
  if (!state.statsOk) {
    dot.className = "dot down";
    text.textContent = "offline";
  } else if (state.statsAt && Date.now() - state.statsAt > STALE_MS) {
    dot.className = "dot down";
    text.textContent = "stale: no answer";
  } else if (state.sseOpen) {
    dot.className = "dot live";
    text.textContent = "live";
  } else {
    dot.className = "dot";
    text.textContent = "polling";
  }
}

// One banner, two sources: the service being unreachable, and panels that failed to load.
const errors = { stats: "", details: "" };
function setError(kind, msg) {
  errors[kind] = msg;
  const text = errors.stats || errors.details;
  const b = $("error-banner");
  b.textContent = text;
  b.hidden = !text;
}
function report(err) {
  if (!(err instanceof Superseded)) setError("details", err.message);
}

// --- details (on change) ------------------------------------------------------------------------

// At most one detail refresh per second: a busy session writes many lines a second.
const MIN_REFRESH_GAP_MS = 1000;
let lastRefreshAt = 0;

function scheduleRefresh(delayMs) {
  if (state.refreshTimer !== null) return;
  const wait = Math.max(delayMs, lastRefreshAt + MIN_REFRESH_GAP_MS - Date.now());
  state.refreshTimer = setTimeout(() => {
    state.refreshTimer = null;
    refreshDetails();
  }, wait);
}

async function refreshDetails() {
  if (state.refreshing) {
    state.refreshAgain = true;
    return;
  }
  state.refreshing = true;
  lastRefreshAt = Date.now();
  try {
    const jobs = [refreshProjects(), refreshModels(), refreshDaily(), refreshCalls(), refreshBlock(), refreshFeed(),
      refreshCurrent()];
    if (state.range === "24h") jobs.push(refreshHourly());
    const results = await Promise.allSettled(jobs);
    if (!results.some((r) => r.reason instanceof Superseded)) state.chartLoading = false;
    const failed = results.filter((r) => r.status === "rejected" && !(r.reason instanceof Superseded));
    setError("details", failed.length ? `Some panels could not be updated: ${failed.map((r) => r.reason.message).join("; ")}` : "");
    renderChart();
  } finally {
    state.refreshing = false;
    if (state.refreshAgain) {
      state.refreshAgain = false;
      scheduleRefresh(0);
    }
  }
}

async function refreshProjects() {
  const data = await getJSON("/api/metrics/projects");
  const list = Array.isArray(data) ? data : data.projects || [];
  list.sort((a, b) => (b.cost || 0) - (a.cost || 0));
  state.projects = list;
  state.shortNames = shortNames(list.map((p) => p.name));
  renderProjectOptions();
  renderProjects();
  renderProjectCards();
}

function renderProjectOptions() {
  for (const [id, current] of [["project-select", state.project], ["feed-project", state.feedProject]]) {
    const sel = $(id);
    const names = state.projects.map((p) => p.name);
    if (current && !names.includes(current)) names.push(current);
    const want = ["", ...names].join("\n");
    const have = [...sel.options].map((o) => o.value).join("\n");
    if (want !== have) {
      sel.replaceChildren(el("option", { value: "", text: "All projects" }),
        ...names.map((n) => el("option", { value: n, text: label(n), title: n })));
    }
    sel.value = current;
  }
}

function renderProjects() {
  const body = $("projects-table").tBodies[0];
  const rows = state.projects.map((p) => {
    const pick = el("button", { type: "button", class: "linklike", text: label(p.name), title: p.name,
      "aria-label": `Show only project ${p.name}` });
    pick.addEventListener("click", (ev) => {
      ev.stopPropagation();
      setProject(state.project === p.name ? "" : p.name);
    });
    const when = el("time");
    setTime(when, p.lastActivity);
    const tr = el("tr", { class: p.name === state.project ? "selected" : "", "data-project": p.name },
      el("td", { class: "name" }, pick),
      el("td", { class: "num", text: fmtCost(p.cost) }),
      el("td", { class: "num", text: fmtInt(p.tokens) }),
      el("td", { class: "num", text: fmtInt(p.calls) }),
      el("td", { class: "num", text: fmtInt(p.errors) }),
      el("td", { class: "num", text: fmtPct(p.cacheHitRate) }),
      el("td", { class: "num", text: fmtMs(p.avgLatency) }),
      el("td", {}, when));
    if (p.name === state.project) tr.setAttribute("aria-selected", "true");
    tr.addEventListener("click", () => setProject(state.project === p.name ? "" : p.name));
    return tr;
  });
  if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 8, class: "muted", text: "No projects yet." })));
  body.replaceChildren(...rows);
}

// With a project selected the cards show that project's totals (from /api/metrics/projects).
function renderProjectCards() {
  if (!state.project) return;
  const p = state.projects.find((x) => x.name === state.project);
  setValue("total-cost", p ? p.cost : 0, fmtCost(p ? p.cost : 0));
  setValue("total-tokens", p ? p.tokens : 0, fmtInt(p ? p.tokens : 0));
  setValue("total-calls", p ? p.calls : 0, fmtInt(p ? p.calls : 0));
  setValue("failed-calls", p ? p.errors : 0, fmtInt(p ? p.errors : 0));
  $("avg-latency").textContent = fmtMs(p ? p.avgLatency : null);
  setValue("cache-savings", "", "–");
  $("cache-read").textContent = "savings are shown for all projects only";
  $("cache-hit").textContent = fmtPct(p ? p.cacheHitRate : null);
  $("token-split").textContent = "";
}

async function refreshModels() {
  const data = await getFor(`/api/metrics/models${query({ project: state.project || undefined })}`);
  const rows = (Array.isArray(data) ? data : data.models || []).map((m) => ({
    model: m.model, tier: m.tier, calls: m.requests, tokens: m.tokens, cost: m.cost,
  }));
  rows.sort((a, b) => (b.cost || 0) - (a.cost || 0));
  renderModels(rows);
  renderTiers(rows);
}

function renderModels(rows) {
  const body = $("models-table").tBodies[0];
  const trs = rows.map((m) => el("tr", {},
    el("td", { text: m.model, title: m.tier || tierOf(m.model) }),
    el("td", { class: "num", text: m.calls === null ? "–" : fmtInt(m.calls) }),
    el("td", { class: "num", text: fmtCompact(m.tokens) }),
    el("td", { class: "num", text: fmtCost(m.cost) })));
  if (!trs.length) trs.push(el("tr", {}, el("td", { colSpan: 4, class: "muted", text: "No calls yet." })));
  body.replaceChildren(...trs);
}

function renderTiers(rows) {
  const sums = new Map(TIERS.map((t) => [t, { cost: 0, tokens: 0 }]));
  for (const m of rows) {
    const s = sums.get(TIERS.includes(m.tier) ? m.tier : tierOf(m.model));
    s.cost += m.cost || 0;
    s.tokens += m.tokens || 0;
  }
  const total = [...sums.values()].reduce((a, s) => a + s.cost, 0);
  const box = el("div", { class: "tiers" });
  for (const t of TIERS) {
    const s = sums.get(t);
    const share = total > 0 ? s.cost / total : 0;
    const fill = el("span", { class: `tier-fill tier-${t}` });
    fill.style.width = `${(share * 100).toFixed(1)}%`;
    box.append(el("div", { class: "tier-row", "data-tier": t },
      el("span", { text: t }),
      el("span", { class: "tier-track", role: "img", "aria-label": `${t}: ${(share * 100).toFixed(0)}% of cost` }, fill),
      el("span", { class: "num", text: `${fmtCost(s.cost)} · ${fmtCompact(s.tokens)}` })));
  }
  $("tiers").replaceChildren(box);
}

// /api/stats' `today` is the service's local day: it is used (updated every 2 s) when that day is
// this browser's (the same local midnight and the next one, compared as instants: one zone has
// several names, UTC and Etc/UTC), else "today" comes from the daily report in the browser's
// zone, like "yesterday" and the chart, so the card never mixes two days.
function todayFromStats() {
  if (state.project) return false;
  const day = state.serverDay;
  if (!day) return true;
  const start = new Date();
  start.setHours(0, 0, 0, 0);
  const end = new Date(start);
  end.setDate(end.getDate() + 1);
  return Date.parse(day.start) === start.getTime() && Date.parse(day.end) === end.getTime();
}

async function refreshDaily() {
  const since = new Date();
  since.setDate(since.getDate() - 29);
  const data = await getFor(`/api/reports/daily${query({
    since: localDate(since), timezone: TZ, project: state.project || undefined,
  })}`);
  state.daily = data.daily || [];
  const byDate = new Map(state.daily.map((d) => [d.date, d]));
  const y = new Date();
  y.setDate(y.getDate() - 1);
  const today = byDate.get(localDate(new Date()));
  const yesterday = byDate.get(localDate(y));
  const yc = yesterday ? yesterday.totalCost : 0;
  const yt = yesterday ? yesterday.totalTokens : 0;
  $("yesterday-cost").textContent = fmtCost(yc);
  const fromStats = todayFromStats();
  if (!fromStats) {
    setValue("today-cost", today ? today.totalCost : 0, fmtCost(today ? today.totalCost : 0));
    setValue("today-tokens", today ? today.totalTokens : 0, fmtInt(today ? today.totalTokens : 0));
  }
  const tc = !fromStats ? (today ? today.totalCost : 0) : state.stats ? state.stats.today_cost : 0;
  const tt = !fromStats ? (today ? today.totalTokens : 0) : state.stats ? state.stats.today_tokens : 0;
  renderTrend("trend-cost", tc, yc);
  renderTrend("trend-tokens", tt, yt);
}

// Calls today and yesterday: the activity endpoint's `total` of call events in each local day.
async function refreshCalls() {
  const start = new Date();
  start.setHours(0, 0, 0, 0);
  const yStart = new Date(start);
  yStart.setDate(yStart.getDate() - 1);
  const count = async (from, to) => {
    const d = await getFor(`/api/metrics/activity${query({
      type: CALL_TYPES, project: state.project || undefined, from: from.toISOString(),
      to: to ? to.toISOString() : undefined, limit: 1,
    })}`);
    return d.total || 0;
  };
  const [today, yesterday] = await Promise.all([count(start, null), count(yStart, start)]);
  setValue("today-calls", today, fmtInt(today));
  renderTrend("trend-calls", today, yesterday);
}

function renderTrend(id, today, yesterday) {
  const node = $(id);
  if (!yesterday && !today) {
    node.textContent = "";
    node.className = "trend";
    return;
  }
  if (!yesterday) {
    node.textContent = "▲ new vs yesterday";
    node.className = "trend up";
    return;
  }
  const pct = ((today - yesterday) / yesterday) * 100;
  node.textContent = `${pct >= 0 ? "▲" : "▼"} ${Math.abs(pct).toFixed(0)}% vs yesterday`;
  node.className = `trend ${pct >= 0 ? "up" : "down"}`;
}

// Cost per hour over the last 24 h: the call events of the window, bucketed here by hour.
// (No endpoint serves hourly sums yet; paging through the events is fine at a day's volume.)
async function refreshHourly() {
  const now = new Date();
  const end = new Date(now);
  end.setMinutes(0, 0, 0);
  const from = new Date(end.getTime() - 23 * 3600e3);
  const events = [];
  for (let page = 0; page < HOURLY_MAX_PAGES; page += 1) {
    const d = await getFor(`/api/metrics/activity${query({
      type: CALL_TYPES, project: state.project || undefined, from: from.toISOString(), limit: HOURLY_PAGE,
      offset: page * HOURLY_PAGE,
    })}`);
    events.push(...(d.events || []));
    if (!d.hasMore) break;
  }
  const buckets = [];
  for (let i = 0; i < 24; i += 1) {
    const start = new Date(from.getTime() + i * 3600e3);
    buckets.push({ start, value: 0, calls: 0 });
  }
  for (const e of events) {
    const t = parseTime(e.timestamp);
    if (!t) continue;
    const i = Math.floor((t.getTime() - from.getTime()) / 3600e3);
    if (i >= 0 && i < 24) {
      buckets[i].value += e.cost || 0;
      buckets[i].calls += 1;
    }
  }
  state.hourly = buckets;
}

function renderChart() {
  let bars;
  let summary;
  if (state.range === "24h") {
    bars = state.hourly.map((b) => ({
      value: b.value,
      tick: `${String(b.start.getHours()).padStart(2, "0")}:00`,
      title: `${shortDateTimeFmt.format(b.start)}: ${fmtCost(b.value)}, ${b.calls} call${b.calls === 1 ? "" : "s"}`,
    }));
    const total = state.hourly.reduce((a, b) => a + b.value, 0);
    summary = `Last 24 hours, per hour: ${fmtCost(total)} in total.`;
  } else {
    const byDate = new Map(state.daily.map((d) => [d.date, d]));
    bars = [];
    for (let i = 29; i >= 0; i -= 1) {
      const d = new Date();
      d.setDate(d.getDate() - i);
      const key = localDate(d);
      const row = byDate.get(key);
      bars.push({ value: row ? row.totalCost : 0, tick: key.slice(5),
        title: `${key}: ${fmtCost(row ? row.totalCost : 0)}, ${fmtInt(row ? row.totalTokens : 0)} tokens` });
    }
    const total = bars.reduce((a, b) => a + b.value, 0);
    summary = `Last 30 days, per day: ${fmtCost(total)} in total.`;
  }
  if (state.chartLoading) summary = "Loading…";
  $("chart-summary").textContent = summary;
  drawBars($("chart"), state.chartLoading ? [] : bars, summary);
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawBars(box, bars, summary) {
  const width = Math.max(280, box.clientWidth || 600);
  const height = 240;
  const pad = { l: 56, r: 8, t: 10, b: 26 };
  const max = Math.max(...bars.map((b) => b.value), 0);
  const top = niceMax(max);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": summary });
  const plotH = height - pad.t - pad.b;
  const plotW = width - pad.l - pad.r;
  const decimals = stepDecimals(top / 4);
  for (let i = 0; i <= 4; i += 1) {
    const v = (top * i) / 4;
    const y = pad.t + plotH - (plotH * i) / 4;
    root.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: y, y2: y, class: "axis" }));
    root.append(svg("text", { x: pad.l - 6, y: y + 4, "text-anchor": "end" }, `$${v.toFixed(decimals)}`));
  }
  const n = bars.length || 1;
  const slot = plotW / n;
  const every = Math.ceil(n / Math.max(1, Math.floor(plotW / 52)));
  bars.forEach((b, i) => {
    const h = top > 0 ? (plotH * b.value) / top : 0;
    const x = pad.l + i * slot + slot * 0.12;
    const rect = svg("rect", { x, y: pad.t + plotH - h, width: Math.max(1, slot * 0.76), height: Math.max(0, h),
      class: "bar", "data-value": b.value });
    rect.append(svg("title", {}, b.title));
    root.append(rect);
    if (i % every === 0) {
      root.append(svg("text", { x: pad.l + i * slot + slot / 2, y: height - 8, "text-anchor": "middle" }, b.tick));
    }
  });
  box.replaceChildren(root);
}

// The axis top: a quarter of it is a round step (0.25, 0.5, 1, 2 or 2.5 times a power of ten).
function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 4, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
// Decimals that show every multiple of `step` exactly ($0.25 steps: 2), at least 2 (cents).
function stepDecimals(step) {
  for (let d = 2; d < 8; d += 1) if (Math.abs(step * 10 ** d - Math.round(step * 10 ** d)) < 1e-6) return d;
  return 8;
}

// --- active block -------------------------------------------------------------------------------

async function refreshBlock() {
  const data = await getJSON(`/api/reports/blocks${query({ active: "true" })}`);
  const block = (data.blocks || []).find((b) => b.isActive && !b.isGap);
  renderBlock(block || null);
}

function renderBlock(b) {
  const body = $("block-body");
  if (!b) {
    body.replaceChildren(el("p", { class: "muted", text: "No active block: no calls in the last 5 hours." }));
    return;
  }
  const start = parseTime(b.startTime);
  const end = parseTime(b.endTime);
  const now = Date.now();
  const total = end - start;
  const elapsed = Math.min(total, Math.max(0, now - start));
  const burn = b.burnRate || {};
  const proj = b.projection || {};
  const limit = b.tokenLimitStatus || null;
  const item = (k, v, id) => el("p", {}, el("span", { class: "k", text: k }), el("span", { id, text: v }));
  const startT = el("time");
  setTime(startT, start);
  startT.textContent = fmtClock(start);
  const endT = el("time");
  setTime(endT, end);
  endT.textContent = fmtClock(end);
  const grid = el("div", { class: "block-grid" },
    el("p", {}, el("span", { class: "k", text: "Window" }), startT, " – ", endT),
    item("Ends in", fmtDuration((end - now) / 60000), "block-remaining"),
    item("Tokens so far", fmtInt(b.totalTokens), "block-tokens"),
    item("Cost so far", fmtCost(b.costUSD), "block-cost"),
    item("Burn rate", b.burnRate
      ? `${fmtInt(Math.round(burn.tokensPerMinute || 0))} tokens/min · ${fmtCost(burn.costPerHour)}/h`
      : "– (needs two calls)", "block-burn"),
    item("Projected at block end", b.projection
      ? `${fmtInt(proj.totalTokens)} tokens · ${fmtCost(proj.totalCost)}` : "–", "block-projection"));
  const parts = [grid,
    el("div", { class: "meter-label" }, el("span", { text: "Time elapsed" }),
      el("span", { text: `${Math.round((elapsed / total) * 100)}%` })),
    el("progress", { max: total, value: elapsed, "aria-label": "Time elapsed in the 5-hour block" })];
  if (limit && limit.limit) {
    const used = b.totalTokens / limit.limit;
    parts.push(
      el("div", { class: "meter-label" },
        el("span", { text: `Tokens vs limit ${fmtInt(limit.limit)}` }),
        el("span", { class: `status-${limit.status || "ok"}`,
          text: `${(used * 100).toFixed(0)}% · projected ${fmtPct((limit.projectedUsage || 0) / limit.limit)}` })),
      el("progress", { max: limit.limit, value: Math.min(limit.limit, b.totalTokens),
        "aria-label": "Tokens used against the token limit" }));
  }
  if (b.models && b.models.length) parts.push(el("p", { class: "muted small", text: `Models: ${b.models.join(", ")}` }));
  body.replaceChildren(...parts);
}

// --- activity feed ------------------------------------------------------------------------------

async function refreshFeed() {
  const data = await getFor(`/api/metrics/activity${query({
    limit: state.feedLimit, type: state.feedType, project: state.feedProject,
  })}`);
  renderFeed(data.events || [], data.total, data.hasMore);
}

function eventKey(e) {
  return e.id || `${e.timestamp}|${e.type}|${e.project}|${e.model || ""}`;
}

function feedItem(e, fresh) {
  const when = el("time");
  setTime(when, e.timestamp);
  const detail = [];
  if (e.type === "error") detail.push(e.error || "API error");
  if (e.type === "model_override") detail.push(`model ${e.previousModel || "?"} → ${e.model || "?"}`);
  else if (e.type === "compaction") {
    detail.push(`context compacted${e.trigger ? ` (${e.trigger})` : ""}`);
    if (e.preTokens) detail.push(`${fmtCompact(e.preTokens)} tokens before`);
  } else if (e.model) detail.push(e.model);
  if (e.type !== "model_override" && e.type !== "compaction" && e.tokens !== undefined && e.tokens !== null) {
    detail.push(`${fmtCompact(e.tokens)} tokens`);
  }
  if (e.type === "cache_hit" && e.savings) detail.push(`saved ${fmtCost(e.savings)}`);
  const amount = e.cost !== undefined && e.cost !== null ? fmtCost(e.cost) : "";
  return el("li", { class: fresh ? "fresh" : "", "data-type": e.type, "data-project": e.project || "",
    "data-key": eventKey(e) },
    when,
    el("span", {}, el("span", { class: `badge ${e.type}`, text: TYPE_LABELS[e.type] || e.type })),
    el("span", { class: "what", title: `${e.project || ""} ${detail.join(" · ")}` },
      el("strong", { text: label(e.project) }), detail.length ? ` · ${detail.join(" · ")}` : ""),
    el("span", { class: "amount", text: amount }));
}

function renderFeed(events, total, hasMore) {
  const list = $("feed");
  const seen = new Set([...list.children].map((li) => li.dataset.key));
  const firstLoad = list.children.length === 0;
  list.replaceChildren(...events.map((e) => feedItem(e, !firstLoad && !seen.has(eventKey(e)))));
  if (!events.length) list.append(el("li", { class: "muted", text: "No activity matches these filters." }));
  const noun = total === 1 ? "event" : "events";
  $("feed-count").textContent = total === undefined ? "" : `${fmtInt(total)} ${noun}${hasMore ? `, newest ${events.length} shown` : ""}`;
  $("feed-more").hidden = !hasMore;
}

function feedAccepts(e) {
  return (!state.feedType || e.type === state.feedType) && (!state.feedProject || e.project === state.feedProject);
}

async function refreshCurrent() {
  const c = await getJSON("/api/metrics/current");
  renderCurrent(c);
}
function renderCurrent(c) {
  if (!c) return;
  const where = [c.project ? label(c.project) : null, c.machine].filter(Boolean).join(" on ");
  $("current-where").textContent = where || "–";
}

// --- health -------------------------------------------------------------------------------------

async function refreshHealth() {
  try {
    const health = await getJSON("/api/metrics/health");
    const dayKnown = state.serverDay !== undefined;
    state.serverDay = health.today || null;
    if (!dayKnown && !todayFromStats()) refreshDaily().catch(() => {});  // today from the report now
    renderHealth(health);
  } catch (err) {
    if (state.statsOk) renderHealth({ ok: false, index: { ok: false, error: `health check failed: ${err.message}` } });
  }
}

// What the banner lists. `ok` in /api/metrics/health covers hard failures only; catching up,
// polling, unpriced models and rejected lines are worth a visible note too.
function healthProblems(h) {
  const out = [];
  if (h.index && h.index.ok === false) out.push(`index error: ${h.index.error || "unknown"}`);
  if (h.ingest_error) out.push(`ingest error: ${h.ingest_error}`);
  if (h.prices && h.prices.error) out.push(`pricing file error: ${h.prices.error}`);
  const c = h.catch_up;
  if (c && c.running && !c.done) {
    out.push(c.bytes_total ? `catching up: ${fmtPct(c.fraction || 0)} of ${fmtCompact(c.bytes_total)} bytes` : "catching up: looking for what is new");
  }
  const o = h.observer;
  if (o && o.mode === "polling") out.push("file watching fell back to polling (OS watch limit?)");
  else if (o && o.alive === false && o.started !== false) out.push(`file watcher is down${o.error ? `: ${o.error}` : ""} (restarting)`);
  const unpriced = Object.keys(h.unpriced_models || {});
  if (unpriced.length) out.push(`unpriced models (cost counted as $0): ${unpriced.join(", ")}`);
  if (h.rejected_lines) out.push(`${fmtInt(h.rejected_lines)} transcript line${h.rejected_lines === 1 ? "" : "s"} rejected`);
  // Files are briefly behind after every write; only a lag that lasts is worth showing.
  const lagging = h.files_lagging || 0;
  if (lagging && state.lastLagging) {
    out.push(`${fmtInt(lagging)} file${lagging === 1 ? "" : "s"} behind by ${fmtCompact(h.bytes_behind || 0)} bytes`);
  }
  state.lastLagging = lagging;
  if (h.ok === false && !out.length) out.push("not ok");
  return out;
}

function renderHealth(h) {
  const banner = $("health-banner");
  const problems = healthProblems(h);
  banner.hidden = !problems.length;
  banner.classList.toggle("banner-error", h.ok === false);
  $("health-text").textContent = problems.join(" · ");
}

// --- live stream --------------------------------------------------------------------------------

let source = null;
let sseRetryMs = 1000;

function connectStream() {
  source = new EventSource(withToken("/api/stream"));
  source.onopen = () => {
    state.sseOpen = true;
    sseRetryMs = 1000;
    renderConn();
  };
  source.onmessage = (ev) => {
    let msg = null;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return; // a keep-alive or a message we do not understand
    }
    onStreamMessage(msg);
  };
  source.onerror = () => {
    state.sseOpen = false;
    renderConn();
    // EventSource retries by itself unless the server refused the stream outright (CLOSED).
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      setTimeout(connectStream, sseRetryMs);
      sseRetryMs = Math.min(30000, sseRetryMs * 2);
    }
  };
}

let streamMessages = 0;

function onStreamMessage(msg) {
  if (!msg || typeof msg !== "object") return;
  streamMessages += 1;
  document.body.dataset.streamMessages = String(streamMessages); // for tests and the curious
  renderCurrent(msg);
  const e = msg.activity;
  if (e && typeof e === "object" && e.type && feedAccepts(e)) {
    const list = $("feed");
    const key = eventKey(e);
    if (![...list.children].some((li) => li.dataset.key === key)) {
      if (list.firstElementChild && !list.firstElementChild.dataset.key) list.firstElementChild.remove();
      list.prepend(feedItem(e, true));
    }
  }
  // The snapshot is recomputed right after the ingest commit; fetch it now and once more shortly.
  pollStats();
  setTimeout(pollStats, 800);
  scheduleRefresh(150);
}

// --- controls -----------------------------------------------------------------------------------

function saveHash() {
  const p = new URLSearchParams();
  if (TOKEN) p.set("token", TOKEN);
  if (state.project) p.set("project", state.project);
  if (state.feedType) p.set("type", state.feedType);
  if (state.range !== "24h") p.set("range", state.range);
  const h = p.toString();
  history.replaceState(null, "", h ? `#${h}` : location.pathname + location.search);
}

function setProject(name) {
  state.project = name;
  state.feedProject = name;
  state.feedLimit = FEED_PAGE;
  // Another project's bars must not stand in for this one's while its data loads.
  state.hourly = [];
  state.daily = [];
  state.chartLoading = true;
  const note = $("scope-note");
  note.hidden = !name;
  note.textContent = name
    ? `Showing project ${name}: cards, chart, models and activity are filtered; “Now” and the 5-hour block cover all projects.`
    : "";
  renderProjectOptions();
  renderProjects();
  renderStats();
  renderProjectCards();
  saveHash();
  scheduleRefresh(0);
}

function setRange(range) {
  state.range = range;
  $("range-24h").setAttribute("aria-pressed", String(range === "24h"));
  $("range-30d").setAttribute("aria-pressed", String(range === "30d"));
  saveHash();
  renderChart();
  if (range === "24h") refreshHourly().then(renderChart, report);
}

function bind() {
  $("project-select").addEventListener("change", (ev) => setProject(ev.target.value));
  $("feed-type").addEventListener("change", (ev) => {
    state.feedType = ev.target.value;
    state.feedLimit = FEED_PAGE;
    saveHash();
    refreshFeed().catch(report);
  });
  $("feed-project").addEventListener("change", (ev) => {
    state.feedProject = ev.target.value;
    state.feedLimit = FEED_PAGE;
    refreshFeed().catch(report);
  });
  $("feed-more").addEventListener("click", () => {
    state.feedLimit = Math.min(1000, state.feedLimit + FEED_PAGE);
    refreshFeed().catch(report);
  });
  $("range-24h").addEventListener("click", () => setRange("24h"));
  $("range-30d").addEventListener("click", () => setRange("30d"));
  $("feed-type").value = state.feedType;
  let resizeTimer = null;
  new ResizeObserver(() => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(renderChart, 100);
  }).observe($("chart"));
}

function start() {
  bind();
  setRange(state.range);
  if (state.project) setProject(state.project);
  pollStats();
  refreshHealth();
  connectStream();
  setInterval(pollStats, STATS_EVERY_MS);
  setInterval(refreshHealth, HEALTH_EVERY_MS);
  setInterval(() => scheduleRefresh(0), DETAILS_EVERY_MS);
  setInterval(renderUpdated, 1000);
}

start();
