import { ApiError, api, describe, el, sessionLink, showNotice, sleep, start, statusBadge, svg,
  when } from "./console.js";

const POLL_MS = 5000;
const HISTORY = 60;  // samples per queue: five minutes at one every five seconds
const FAILURES = 10;
const depths = new Map();  // queue name -> recent depths, oldest first

function seconds(value) {
  if (value === null || value === undefined) return "";
  if (value < 120) return `${Math.round(value)} s`;
  if (value < 7200) return `${Math.round(value / 60)} min`;
  return `${Math.round(value / 3600)} h`;
}

function fill(id, rows, empty) {
  const body = document.getElementById(id);
  const columns = body.closest("table").querySelectorAll("thead th").length;
  body.replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: columns, className: "muted" }, empty))]));
}

function sparkline(values) {
  const width = 180, height = 28;
  const top = Math.max(1, ...values);
  const step = width / (HISTORY - 1);
  const offset = (HISTORY - values.length) * step;
  const points = values.map((v, i) =>
    `${(offset + i * step).toFixed(1)},${(height - 2 - (v / top) * (height - 4)).toFixed(1)}`);
  return svg("svg", { className: "sparkline", width, height, viewBox: `0 0 ${width} ${height}`,
                      role: "img", "aria-label": `depth, highest ${top}` },
    svg("line", { className: "baseline", x1: 0, y1: height - 2, x2: width, y2: height - 2 }),
    svg("polyline", { points: points.join(" ") }),
    svg("text", { x: width - 2, y: 10, "text-anchor": "end", className: "figure" }, `max ${top}`));
}

async function workers() {
  const { data } = await api("/v1/admin/workers");
  document.getElementById("observed").textContent = "observed " + when(data.observed_at);
  fill("workers", data.data.map((w) => el("tr", {},
    el("td", {}, w.name), el("td", {}, w.pool ?? ""), el("td", { className: "num" }, w.concurrency ?? ""),
    el("td", { className: "num" }, w.active), el("td", { className: "num" }, w.reserved),
    el("td", {}, (w.queues || []).join(", ")), el("td", {}, seconds(w.uptime_s)))),
    "No worker answered.");
}

async function queues() {
  const { data } = await api("/v1/admin/queues");
  fill("queues", data.data.map((q) => {
    const history = depths.get(q.name) || [];
    history.push(q.depth);
    if (history.length > HISTORY) history.shift();
    depths.set(q.name, history);
    return el("tr", { dataset: { queue: q.name } }, el("td", {}, q.name),
      el("td", { className: "num" }, q.depth),
      el("td", {}, data.oldest_age_known ? seconds(q.oldest_age_s) : "unknown"),
      el("td", {}, sparkline(history)));
  }), "No queues.");
}

async function tasks() {
  const { data } = await api("/v1/admin/tasks?state=active");
  fill("tasks", data.data.map((t) => el("tr", {},
    el("td", { className: "mono" }, t.id), el("td", {}, t.worker ?? ""),
    el("td", {}, t.session_id ? sessionLink(t.session_id, t.session_id) : ""),
    el("td", { className: "num" }, t.round_no ?? ""), el("td", {}, when(t.started_at)))),
    "No task is running.");
}

async function breakers() {
  const { data } = await api("/v1/admin/breakers");
  const empty = data.shared ? "No breakers." : "Breakers are per process (Redis is off).";
  fill("breakers", data.data.map((b) => el("tr", { dataset: { model: b.model } },
    el("td", {}, b.model), el("td", {}, statusBadge(b.state)),
    el("td", { className: "num" }, `${b.failures} / ${b.fail_max}`), el("td", {}, when(b.opened_at)),
    el("td", {}, el("button", { type: "button", className: "reset",
      onclick: () => reset(b.model) }, "Reset")))), empty);
}

async function reset(model) {
  try {
    await api(`/v1/admin/breakers/${model.split("/").map(encodeURIComponent).join("/")}/reset`,
              { method: "POST" });
    showNotice("");
    await breakers();
  } catch (error) {
    showNotice(describe(error));
  }
}

async function failures() {
  const lists = await Promise.all(["failed", "degraded"].map((status) =>
    api(`/v1/sessions?status=${status}&limit=${FAILURES}`)));
  const sessions = lists.flatMap(({ data }) => data.data)
    .sort((a, b) => (b.updated_at || "").localeCompare(a.updated_at || ""))
    .slice(0, FAILURES);
  fill("failures", sessions.map((s) => el("tr", {},
    el("td", {}, sessionLink(s.id, s.title)), el("td", {}, statusBadge(s.status)),
    el("td", {}, when(s.updated_at)))), "No failed or degraded session.");
}

async function poll() {
  const results = await Promise.allSettled([workers(), queues(), tasks(), breakers(), failures()]);
  const errors = results.filter((r) => r.status === "rejected").map((r) => r.reason);
  if (errors.some((e) => e instanceof ApiError && e.status === 403)) {
    showNotice("The fleet view needs an admin key.");
    return false;
  }
  showNotice(errors.length ? describe(errors[0]) : "");
  return true;
}

start(async () => {
  // One poll at a time, for as long as the page is open.
  while (await poll()) await sleep(POLL_MS);
});
