import { api, el, sessionLink, start, statusBadge, when } from "./console.js";

const PAGE = 25;
const FILTERS = ["status", "pinned", "q"];

function query(form, cursor) {
  const params = new URLSearchParams({ limit: PAGE });
  for (const name of FILTERS) {
    const value = form.elements[name].value.trim();
    if (value) params.set(name, value);
  }
  if (cursor) params.set("cursor", cursor);
  return params;
}

function row(session) {
  const title = sessionLink(session.id, session.title);
  return el("tr", { dataset: { sessionId: session.id } },
    el("td", {}, title, session.pinned ? el("span", { className: "pin" }, " (pinned)") : null),
    el("td", {}, statusBadge(session.status)),
    el("td", { className: "num" }, session.round_count),
    el("td", {}, when(session.created_at)));
}

start(async () => {
  const form = document.getElementById("filters");
  const rows = document.getElementById("session-rows");
  const more = document.getElementById("more");
  const empty = document.getElementById("empty");
  const initial = new URLSearchParams(location.search);
  for (const name of FILTERS) form.elements[name].value = initial.get(name) || "";
  let cursor = null;

  async function load(append) {
    const params = query(form, append ? cursor : null);
    const { data } = await api("/v1/sessions?" + params);
    if (!append) rows.replaceChildren();
    rows.append(...data.data.map(row));
    cursor = data.next_cursor;
    more.hidden = !cursor;
    empty.hidden = rows.children.length > 0;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = query(form);
    params.delete("limit");
    history.replaceState(null, "", params.toString() ? "?" + params : location.pathname);
    load(false);
  });
  more.addEventListener("click", () => load(true));
  await load(false);
});
