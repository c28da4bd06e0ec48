import { api, el, followEvents, showNotice, describe, sleep, start, statusBadge, svg, when }
  from "./console.js";
import { renderMarkdown } from "./markdown.js";

const TERMINAL = new Set(["completed", "degraded", "failed", "cancelled"]);
const MAX_FOLLOWS = 30;  // stream reconnects (each ends with a round, an error or an hour)

const id = document.body.dataset.sessionId;
const path = "/v1/sessions/" + encodeURIComponent(id);
let etag = null;
let current = null;
let loading = null;
let again = false;

// Fetch the session (cheaply: 304 when unchanged) and draw it. Calls made while one is in
// flight coalesce into one more fetch after it.
function refresh() {
  if (loading) { again = true; return loading; }
  loading = (async () => {
    do {
      again = false;
      const { status, data, headers } = await api(path, {
        headers: etag ? { "If-None-Match": etag } : {} });
      if (status !== 304) {
        etag = headers.get("ETag");
        current = data;
        draw(data);
      }
    } while (again);
  })().finally(() => { loading = null; });
  return loading;
}

function finished(session) {
  return session && TERMINAL.has(session.status);
}

function usageText(usage) {
  if (!usage) return "";
  let text = `${usage.total_tokens} tokens (${usage.prompt_tokens} prompt, ` +
    `${usage.completion_tokens} completion)`;
  if (usage.cost !== undefined && usage.cost !== null) text += ` · $${usage.cost.toFixed(6)}`;
  return text;
}

function draw(session) {
  document.title = session.title + " · LLM Council";
  document.getElementById("title").textContent = session.title;
  document.getElementById("status").replaceChildren(statusBadge(session.status));
  document.getElementById("meta").textContent =
    `Created ${when(session.created_at)} · members ${session.members.map((m) => m.name)
      .join(", ")} · chairman ${session.chairman.name}`;
  document.getElementById("usage").textContent = "Usage: " + usageText(session.usage);
  document.getElementById("rounds").replaceChildren(...session.rounds.map(drawRound));
}

function drawRound(round) {
  const stage = round.stage ? ` · stage: ${round.stage}` : "";
  return el("section", { className: "round", id: "round-" + round.round_no,
                         dataset: { status: round.status } },
    el("h2", {}, `Round ${round.round_no} `, statusBadge(round.status),
       el("span", { className: "muted" }, stage)),
    el("p", { className: "question" }, round.question),
    round.error ? el("p", { className: "error" }, round.error) : null,
    round.notes.length ? el("ul", { className: "notes" },
      round.notes.map((note) => el("li", {}, note))) : null,
    drawSynthesis(round.synthesis),
    el("h3", {}, "Answers"),
    el("div", { className: "answers" }, round.answers.map(drawAnswer)),
    el("h3", {}, "Ranking"),
    drawRanking(round.aggregate),
    el("h3", {}, "Ballots"),
    drawBallots(round),
    el("p", { className: "usage" }, "Round usage: " + usageText(round.usage)));
}

function drawAnswer(answer) {
  const body = answer.content
    ? el("div", { className: "markdown" }, renderMarkdown(answer.content))
    : el("p", { className: "error" }, "No answer: " + (answer.error || "unknown error"));
  return el("article", { className: "answer card", dataset: { member: answer.member } },
    el("h4", {}, answer.name), body,
    el("p", { className: "muted small" }, usageText(answer.usage) +
       (answer.latency_ms ? ` · ${Math.round(answer.latency_ms)} ms` : "")));
}

function drawSynthesis(synthesis) {
  if (!synthesis) return el("section", { className: "synthesis pending" },
    el("p", { className: "muted" }, "The final answer is not written yet."));
  const standIn = synthesis.stand_in_for
    ? el("p", { className: "muted" }, `Written by a stand-in for ${synthesis.stand_in_for.chairman}`)
    : null;
  const body = synthesis.content
    ? el("div", { className: "markdown" }, renderMarkdown(synthesis.content))
    : el("p", { className: "error" }, "No final answer: " + (synthesis.error || "unknown error"));
  return el("section", { className: "synthesis card" },
    el("h3", {}, `Final answer (${synthesis.name})`), standIn, body);
}

// The aggregate ranking as bars: longer is better (mean rank 1 fills the bar); the orange
// strip under each bar is the reviewers' disagreement about that member (0 to 1).
function drawRanking(standings) {
  if (!standings || !standings.length) {
    return el("p", { className: "muted ranking-empty" }, "No ranking yet.");
  }
  const row = 34, label = 170, width = 300, text = 360;
  const worst = Math.max(2, standings.length, ...standings.map((s) => s.mean_rank || 1));
  const chart = svg("svg", { className: "ranking-chart", role: "img",
    viewBox: `0 0 ${label + width + text} ${row * standings.length}`,
    width: label + width + text, height: row * standings.length,
    "aria-label": "aggregate ranking" });
  standings.forEach((standing, index) => {
    const y = index * row;
    const score = standing.mean_rank === null ? 0 : (worst - standing.mean_rank) / (worst - 1);
    const spread = standing.disagreement ?? 0;
    chart.append(
      svg("text", { x: 0, y: y + 18, className: "label" }, `${standing.rank}. ${standing.name}`),
      svg("rect", { className: "track", x: label, y: y + 4, width, height: 18, rx: 3 }),
      svg("rect", { className: "bar", x: label, y: y + 4, width: Math.max(2, score * width),
                    height: 18, rx: 3, "data-member": standing.member }),
      svg("rect", { className: "disagreement", x: label, y: y + 25, height: 4,
                    width: Math.max(0, spread * width) }),
      svg("text", { x: label + width + 10, y: y + 18, className: "figure" },
          standing.mean_rank === null ? "not ranked"
            : `mean rank ${standing.mean_rank.toFixed(2)} · ${standing.ballots} ballots · ` +
              `disagreement ${(standing.disagreement ?? 0).toFixed(2)}`));
  });
  return el("figure", { className: "ranking" }, chart,
    el("figcaption", { className: "muted small" },
       "Bar: mean rank (full = ranked first by all). Orange strip: disagreement, 0 to 1."));
}

function drawBallots(round) {
  if (!round.ballots.length) return el("p", { className: "muted" }, "No ballots yet.");
  const names = Object.fromEntries(round.answers.map((a) => [a.member, a.name]));
  return el("ul", { className: "ballots" }, round.ballots.map((ballot) => el("li",
    { dataset: { reviewer: ballot.reviewer } },
    el("strong", {}, ballot.name), ": ",
    ballot.valid && ballot.ranking
      ? ballot.ranking.map((member) => names[member] || member).join(" › ")
      : el("span", { className: "error" }, "invalid ballot" +
           (ballot.error ? ": " + ballot.error : "")),
    ballot.repaired ? el("span", { className: "muted" }, " (repaired)") : null)));
}

async function follow() {
  const live = document.getElementById("live");
  const cursor = { lastId: null };
  for (let attempt = 0; attempt < MAX_FOLLOWS && !finished(current); attempt++) {
    live.textContent = "live";
    await followEvents(path + "/events", () => { refresh().catch(report); }, cursor);
    await refresh();
    if (!finished(current)) await sleep(2000);
  }
  live.textContent = finished(current) ? "" : "stopped following; reload to resume";
}

function report(error) {
  showNotice(describe(error));
}

start(async () => {
  await refresh();
  await follow();
});
