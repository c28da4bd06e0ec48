// What every console page shares: the key, calls to the JSON API, the event stream, the DOM.
// Data is only ever put on the page as text (textContent, createTextNode), never as HTML.

const KEY = "llm-council.api-key";
const LOGIN = "/console/login";
const SSE_MAX_RECONNECTS = 20;

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `the API answered ${status}`);
    this.status = status;
    this.code = error.code || "http_" + status;
    this.details = error.details;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function signIn(key) {
  sessionStorage.setItem(KEY, key);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

function authHeaders(extra) {
  const headers = new Headers(extra || {});
  const key = apiKey();
  if (key) headers.set("X-API-Key", key);
  return headers;
}

function toLogin() {
  signOut();
  const here = location.pathname + location.search;
  location.assign(LOGIN + "?next=" + encodeURIComponent(here));
}

// Call the JSON API with the key; resolve to {status, data, headers}, or throw an ApiError.
export async function api(path, options = {}) {
  const init = { method: options.method || "GET", headers: authHeaders(options.headers),
                 cache: "no-store", signal: options.signal };
  if (options.body !== undefined) {
    init.headers.set("Content-Type", "application/json");
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(path, init);
  if (response.status === 401 && !options.keepKey) {
    toLogin();
    throw new ApiError(401, null);
  }
  if (response.status === 304 || response.status === 204) {
    return { status: response.status, data: null, headers: response.headers };
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return { status: response.status, data, headers: response.headers };
}

// Read a Server-Sent Events stream with fetch (EventSource cannot send the key header).
// Calls onEvent({id, type, data}) per event; resumes after the last id when the connection
// drops; resolves when the server ends the stream (or answers 204: nothing more to come).
export async function followEvents(path, onEvent, cursor = { lastId: null }) {
  let retryMs = 2000;
  for (let attempt = 0; attempt < SSE_MAX_RECONNECTS; attempt++) {
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (cursor.lastId) headers.set("Last-Event-ID", cursor.lastId);
    let response;
    try {
      response = await fetch(path, { headers, cache: "no-store" });
    } catch (error) {
      await sleep(retryMs);
      continue;
    }
    if (response.status === 401) return toLogin();
    if (response.status === 204) return;
    if (!response.ok) {
      await sleep(retryMs);
      continue;
    }
    let complete = false;
    try {
      complete = await readFrames(response.body, onEvent, cursor, (ms) => { retryMs = ms; });
    } catch (error) {
      complete = false;  // the connection broke: resume after the last id
    }
    if (complete) return;
    await sleep(retryMs);
  }
}

async function readFrames(body, onEvent, cursor, setRetry) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return true;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = parseFrame(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (frame.retry) setRetry(frame.retry);
      if (frame.id) cursor.lastId = frame.id;
      if (frame.data !== undefined) onEvent(frame);
    }
  }
}

function parseFrame(text) {
  const frame = { type: "message" };
  const data = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (name === "data") data.push(value);
    else if (name === "id") frame.id = value;
    else if (name === "event") frame.type = value;
    else if (name === "retry" && /^\d+$/.test(value)) frame.retry = Number(value);
  }
  if (data.length) {
    try { frame.data = JSON.parse(data.join("\n")); } catch { frame.data = null; }
  }
  return frame;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Build an element: el("td", {className: "x"}, "text", otherNode). Strings become text nodes.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "className") node.setAttribute("class", value);
    else node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

export function statusBadge(status) {
  return el("span", { className: "status status-" + String(status).replace(/\W/g, "") }, status);
}

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return isNaN(date) ? String(iso) : date.toLocaleString();
}

export function sessionLink(id, text) {
  return el("a", { href: "/console/sessions/" + encodeURIComponent(id) }, text);
}

export function showNotice(message) {
  const notice = document.getElementById("notice");
  notice.textContent = message;
  notice.hidden = !message;
}

export function describe(error) {
  if (error instanceof ApiError) {
    const details = error.details ? " " + JSON.stringify(error.details) : "";
    return `${error.message} (${error.code})${details}`;
  }
  return String(error && error.message ? error.message : error);
}

// Run a page: send visitors without a key to the login page, wire "sign out", report failures.
export function start(run) {
  const boot = async () => {
    const logout = document.getElementById("logout");
    if (logout) logout.addEventListener("click", () => { signOut(); location.assign(LOGIN); });
    if (document.body.dataset.page !== "login" && apiKey() === null) return toLogin();
    try {
      await run();
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) showNotice(describe(error));
    }
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
}
