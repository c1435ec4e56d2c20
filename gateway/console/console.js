// The auditors' console: plain DOM, no framework, no inline script (the page's CSP forbids it).
"use strict";

const $ = (sel) => document.querySelector(sel);
const TOKEN_KEY = "lienthong.auditor.token";

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function say(text) { $("#message").textContent = text || ""; }

// A bearer token travels in a header, which carries Latin-1 only: tokens are printable ASCII.
const TOKEN_FORM = /^[\x21-\x7e]+$/;
const UNREACHABLE = "The gateway did not answer: is it running, and the network up?";

// The gateway's answer; a failure outside it is said in words, not the browser's.
async function api(path, signal, options = {}) {
  const headers = { ...(options.headers || {}) };
  // Without a token the browser's client certificate, if it has one, identifies the auditor.
  if (token()) headers.Authorization = "Bearer " + token();
  let response;
  try {
    response = await fetch(path, { ...options, headers, signal });
  } catch (err) {
    throw unreachable(err, signal);
  }
  if (!response.ok) {
    let detail = response.statusText;  // a proxy's 502 page says no more than its status
    if (isJson(response)) {
      try { const p = await response.json(); detail = p.detail || p.title || detail; }
      catch (err) { if (signal.aborted) throw err; }
    }
    throw new Error(response.status + ": " + detail);
  }
  return response;
}

function isJson(response) {
  return /^application\/([\w.-]+\+)?json\b/i.test(response.headers.get("Content-Type") || "");
}

// The JSON of a gateway's answer: a page from something in between (a captive portal) is no
// answer, and a body cut short is none either.
async function apiJson(path, signal, options = {}) {
  const response = await api(path, signal, options);
  if (isJson(response)) {
    try { return await response.json(); }
    catch (err) { if (signal.aborted || !(err instanceof SyntaxError)) throw unreachable(err, signal); }
  }
  throw new Error(`The answer is not the gateway's (HTTP ${response.status}, ` +
    `${response.headers.get("Content-Type") || "no type"}): is a proxy or a portal in between?`);
}

function unreachable(err, signal) { return signal.aborted ? err : new Error(UNREACHABLE); }

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);  // textContent: log data is never HTML
  if (cls) td.className = cls;
  row.appendChild(td);
}

function params(form) {
  const out = new URLSearchParams();
  for (const [k, v] of new FormData(form)) if (v) out.set(k, v);
  return out;
}

// Each tab's query on the way, which a new one of the tab aborts: a slower, older answer is never
// shown under a newer query, and a double click runs once (the second click's run).
const running = new Map();

function start(tab) {
  running.get(tab)?.abort();
  const controller = new AbortController();
  running.set(tab, controller);
  return controller.signal;
}

// --- events ---
let nextCursor = null;
let lastQuery = null;

async function loadEvents(signal, append) {
  const query = new URLSearchParams(lastQuery);
  const body = $("#events-table tbody");
  if (append) {
    query.set("cursor", nextCursor);
  } else {  // cleared first: a search that fails shows no rows of the one before, and no More
    body.replaceChildren();
    $("#events-more").hidden = true;
  }
  const page = await apiJson("/v1/audit/events?" + query, signal);
  signal.throwIfAborted();
  for (const e of page.items) {
    const tr = document.createElement("tr");
    cell(tr, e.seq); cell(tr, e.at); cell(tr, e.action); cell(tr, e.outcome || "ok");
    cell(tr, e.member); cell(tr, e.service); cell(tr, e.dossier || e.document); cell(tr, e.detail);
    body.appendChild(tr);
  }
  nextCursor = page.next;
  $("#events-more").hidden = !page.next;
  say(body.children.length ? "" : "No events match.");
}

// --- timeline ---
async function loadTimeline(signal, form) {
  const data = new FormData(form);
  const query = new URLSearchParams({ [data.get("kind")]: data.get("code") });
  $("#timeline").replaceChildren();
  const entries = document.createDocumentFragment();  // shown at once, when every page is in
  let cursor = null;
  do {
    if (cursor) query.set("cursor", cursor);
    const page = await apiJson("/v1/audit/events?" + query, signal);
    for (const e of page.items) {
      const li = document.createElement("li");
      li.textContent = `${e.at} — ${e.action} (${e.outcome || "ok"})` +
        (e.step ? ` step ${e.step}` : "") + (e.member ? ` by ${e.member}` : "") +
        (e.reference ? ` ref ${e.reference}` : "") +
        (e.detail ? `: ${e.detail}` : "") + ` [#${e.seq}]`;  // why a job died, an operator's reason
      entries.appendChild(li);
    }
    cursor = page.next;
  } while (cursor);
  signal.throwIfAborted();
  const found = entries.children.length;
  $("#timeline").replaceChildren(entries);
  say(found ? "" : "Nothing recorded for this code.");
}

// --- citizen ---
async function loadCitizen(signal, form) {
  const personal_id = new FormData(form).get("personal_id");
  const body = $("#accessors tbody");
  body.replaceChildren();
  const result = await apiJson("/v1/audit/search", signal, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ personal_id }),
  });
  signal.throwIfAborted();
  for (const a of result.accessors) {
    const tr = document.createElement("tr");
    cell(tr, a.member); cell(tr, a.service); cell(tr, a.action); cell(tr, a.n);
    cell(tr, a.first_at); cell(tr, a.last_at);
    body.appendChild(tr);
  }
  say(result.accessors.length ? "" : "No recorded access to this citizen's data.");
}

// --- checkpoints ---
// Newest first, a page (20) at a time: "More" asks for those before the last one shown.
let checkpointsBefore = null;

async function loadCheckpoints(signal, append) {
  const query = new URLSearchParams({ verify: "1" });
  const body = $("#checkpoints tbody");
  if (append) {
    query.set("before", checkpointsBefore);
  } else {
    body.replaceChildren();
    $("#checkpoints-more").hidden = true;
  }
  const page = await apiJson("/v1/audit/checkpoints?" + query, signal);
  signal.throwIfAborted();
  for (const c of page.items) {
    const tr = document.createElement("tr");
    cell(tr, c.size); cell(tr, c.at); cell(tr, c.signer); cell(tr, c.timestamp_time);
    const status = c.verified ? (c.trust_checked ? "verified" : "signature ok (no trust anchors)")
                              : "FAILED: " + c.problem;
    cell(tr, status, c.verified ? "ok" : "bad");
    body.appendChild(tr);
  }
  checkpointsBefore = page.next;
  $("#checkpoints-more").hidden = !page.next;
  say(body.children.length ? "" : "No checkpoint yet.");
}

// --- export ---
async function exportBundle(signal, form) {
  const body = {};
  for (const [k, v] of new FormData(form)) if (v) body[k] = v;
  const response = await api("/v1/audit/exports", signal, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  let blob;
  try { blob = await response.blob(); } catch (err) { throw unreachable(err, signal); }
  signal.throwIfAborted();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  // A DocumentId holds "/" and ",": not in a file's name.
  a.download = (body.dossier || body.document || "range").replace(/[^\w.-]+/g, "_") + "-evidence.zip";
  document.body.appendChild(a);
  a.click();
  a.remove();
  say("");
}

// A query of the tab, started by an event: its error is shown unless a newer query replaced it.
function guard(tab, fn) {
  return async (event) => {
    if (event) event.preventDefault();
    const signal = start(tab);
    try { await fn(signal, event); } catch (err) { if (!signal.aborted) say(err.message); }
  };
}

function showToken() {
  $("#token-state").textContent = token() ? "token set" : "no token";
  $("#token-forget").hidden = !token();
}

document.addEventListener("DOMContentLoaded", () => {
  showToken();
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const typed = $("#token").value.trim();
    if (!TOKEN_FORM.test(typed)) {
      say("A token is ASCII letters, digits and punctuation only: this one cannot be sent.");
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, typed);
    $("#token").value = "";
    showToken();
    say("");
  });
  $("#token-forget").addEventListener("click", () => {  // a shared workstation
    sessionStorage.removeItem(TOKEN_KEY);
    showToken();
  });
  for (const button of document.querySelectorAll("nav button")) {
    button.addEventListener("click", () => {
      for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b === button);
      for (const s of document.querySelectorAll("main section")) s.hidden = s.id !== "tab-" + button.dataset.tab;
      say("");
    });
  }
  $("#events-form").addEventListener("submit", guard("events", (signal, e) => {
    lastQuery = params(e.target).toString();
    return loadEvents(signal, false);
  }));
  $("#events-more").addEventListener("click", guard("events", (signal) => loadEvents(signal, true)));
  $("#timeline-form").addEventListener("submit", guard("timeline", (signal, e) => loadTimeline(signal, e.target)));
  $("#citizen-form").addEventListener("submit", guard("citizen", (signal, e) => loadCitizen(signal, e.target)));
  $("#checkpoints-load").addEventListener("click", guard("checkpoints", (signal) => loadCheckpoints(signal, false)));
  $("#checkpoints-more").addEventListener("click", guard("checkpoints", (signal) => loadCheckpoints(signal, true)));
  $("#export-form").addEventListener("submit", guard("export", (signal, e) => exportBundle(signal, e.target)));
});
