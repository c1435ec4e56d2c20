// The auditors' console: plain DOM, no framework, no inline script (the page's CSP forbids it).
"use strict";

const $ = (sel) => document.querySelector(sel);
const TOKEN_KEY = "lienthong.auditor.token";

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function say(text) { $("#message").textContent = text || ""; }

async function api(path, options = {}) {
  const headers = { Authorization: "Bearer " + token(), ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let detail = response.statusText;
    try { const p = await response.json(); detail = p.detail || p.title || detail; } catch (e) { /* not JSON */ }
    throw new Error(response.status + ": " + detail);
  }
  return response;
}

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

// --- events ---
let nextCursor = null;
let lastQuery = null;

async function loadEvents(append) {
  const query = new URLSearchParams(lastQuery);
  if (append && nextCursor) query.set("cursor", nextCursor);
  const page = await (await api("/v1/audit/events?" + query)).json();
  const body = $("#events-table tbody");
  if (!append) body.replaceChildren();
  for (const e of page.items) {
    const tr = document.createElement("tr");
    cell(tr, e.seq); cell(tr, e.at); cell(tr, e.action); cell(tr, e.outcome || "ok");
    cell(tr, e.member); cell(tr, e.service); cell(tr, e.dossier || e.document);
    body.appendChild(tr);
  }
  nextCursor = page.next;
  $("#events-more").hidden = !page.next;
  say(page.items.length ? "" : "No events match.");
}

// --- timeline ---
async function loadTimeline(form) {
  const data = new FormData(form);
  const query = new URLSearchParams({ [data.get("kind")]: data.get("code") });
  const list = $("#timeline");
  list.replaceChildren();
  let cursor = null;
  do {
    if (cursor) query.set("cursor", cursor);
    const page = await (await api("/v1/audit/events?" + query)).json();
    for (const e of page.items) {
      const li = document.createElement("li");
      li.textContent = `${e.at} — ${e.action} (${e.outcome || "ok"})` +
        (e.step ? ` step ${e.step}` : "") + (e.member ? ` by ${e.member}` : "") +
        (e.reference ? ` ref ${e.reference}` : "") + ` [#${e.seq}]`;
      list.appendChild(li);
    }
    cursor = page.next;
  } while (cursor);
  say(list.children.length ? "" : "Nothing recorded for this code.");
}

// --- citizen ---
async function loadCitizen(form) {
  const personal_id = new FormData(form).get("personal_id");
  const result = await (await api("/v1/audit/search", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ personal_id }),
  })).json();
  const body = $("#accessors tbody");
  body.replaceChildren();
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

async function loadCheckpoints(append) {
  const query = new URLSearchParams({ verify: "1" });
  if (append && checkpointsBefore) query.set("before", checkpointsBefore);
  const page = await (await api("/v1/audit/checkpoints?" + query)).json();
  const body = $("#checkpoints tbody");
  if (!append) body.replaceChildren();
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
async function exportBundle(form) {
  const body = {};
  for (const [k, v] of new FormData(form)) if (v) body[k] = v;
  const response = await api("/v1/audit/exports", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const blob = await response.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = (body.dossier || body.document || "range") + "-evidence.zip";
  document.body.appendChild(a);
  a.click();
  a.remove();
  say("");
}

function guard(fn) {
  return async (event) => {
    if (event) event.preventDefault();
    if (!token()) { say("Enter the auditor token first."); return; }
    try { await fn(event); } catch (err) { say(err.message); }
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("#token-state").textContent = token() ? "token set" : "";
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value);
    $("#token").value = "";
    $("#token-state").textContent = "token set";
  });
  for (const button of document.querySelectorAll("nav button")) {
    button.addEventListener("click", () => {
      for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b === button);
      for (const s of document.querySelectorAll("main section")) s.hidden = s.id !== "tab-" + button.dataset.tab;
      say("");
    });
  }
  $("#events-form").addEventListener("submit", guard(async (e) => {
    lastQuery = params(e.target).toString(); nextCursor = null; await loadEvents(false);
  }));
  $("#events-more").addEventListener("click", guard(() => loadEvents(true)));
  $("#timeline-form").addEventListener("submit", guard((e) => loadTimeline(e.target)));
  $("#citizen-form").addEventListener("submit", guard((e) => loadCitizen(e.target)));
  $("#checkpoints-load").addEventListener("click", guard(() => loadCheckpoints(false)));
  $("#checkpoints-more").addEventListener("click", guard(() => loadCheckpoints(true)));
  $("#export-form").addEventListener("submit", guard((e) => exportBundle(e.target)));
});
