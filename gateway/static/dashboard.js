// smsgw dashboard: polls /api/v1/stats and drives the JSON API as the operator.
// Text from the server is only ever set with textContent, never as HTML.
"use strict";

const POLL_MS = 2000;
const COUNTERS = [
  ["processed", "processed"], ["not_processed", "not processed"], ["other", "other"],
  ["blocked", "blocked"], ["sent", "sent"], ["delivered", "delivered"], ["failed", "failed"],
  ["cancelled", "cancelled"], ["clicked", "clicked"], ["unconfirmed", "in doubt"],
  ["send_rate_per_min", "per min"], ["cost", "cost"],
];
const $ = (sel, root = document) => root.querySelector(sel);
const state = { csrf: "", cards: new Map(), campaigns: [], timer: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

class ApiError extends Error {}

async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = state.csrf;
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const response = await fetch(path, opts);
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && !path.startsWith("/dashboard/")) showLogin();
  if (!response.ok) {
    const where = data.field ? ` (${data.field})` : "";
    throw new ApiError((data.error || response.statusText) + where);
  }
  return data;
}

function say(form, text, ok = true) {
  const out = $(".result", form);
  out.textContent = text;
  out.className = "result " + (ok ? "ok" : "err");
}

// -- login --------------------------------------------------------------------
function showLogin(usersConfigured = true) {
  clearInterval(state.timer);
  $("#app-view").hidden = true;
  $("#login-view").hidden = false;
  $("#logout").hidden = true;
  $("#who").textContent = "";
  $("#login-hint").hidden = usersConfigured;
}

function showApp(user) {
  $("#login-view").hidden = true;
  $("#app-view").hidden = false;
  $("#logout").hidden = false;
  $("#who").textContent = user;
  refresh();
  clearInterval(state.timer);
  state.timer = setInterval(refresh, POLL_MS);
}

async function boot() {
  const response = await fetch("/dashboard/session", { credentials: "same-origin" });
  const data = await response.json().catch(() => ({}));
  if (response.ok) {
    state.csrf = data.csrf;
    showApp(data.user);
  } else showLogin(data.users_configured !== false);
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  $("#login-error").textContent = "";
  try {
    const data = await api("POST", "/dashboard/login",
      { user: form.user.value, password: form.password.value });
    state.csrf = data.csrf;
    form.password.value = "";
    showApp(data.user);
  } catch (err) { $("#login-error").textContent = err.message; }
});

$("#logout").addEventListener("click", async () => {
  await api("POST", "/dashboard/logout").catch(() => {});
  showLogin();
});

// -- live view ----------------------------------------------------------------
async function refresh() {
  try {
    const stats = await api("GET", "/api/v1/stats");
    render(stats);
    $("#live").textContent = "live · " + new Date().toLocaleTimeString();
  } catch (err) {
    $("#live").textContent = "connection lost: " + err.message;
  }
}

function render(stats) {
  state.campaigns = stats.campaigns;
  renderCampaigns(stats.campaigns);
  renderChannels(stats.channels);
  renderAttention(stats.campaigns, stats.channels);
  renderChart(stats.chart);
  renderList($("#failures"), stats.recent_failures, (f) =>
    `${f.at.slice(11, 19)} #${f.id} ${f.destination} · ${f.campaign || "?"} · ` +
    `${f.channel || "-"}: ${f.error}${f.final ? "" : " (will retry)"}`, "No failures.");
  renderList($("#clicks"), stats.recent_clicks, (c) =>
    `${(c.at || "").slice(11, 19)} ${c.destination || ""} ${c.url || ""}`, "No clicks yet.");
  fillCampaignSelects(stats.campaigns.map((c) => c.name));
}

function renderList(ul, items, line, empty) {
  ul.replaceChildren(...(items.length ? items.map((i) => el("li", { text: line(i) }))
    : [el("li", { class: "muted", text: empty })]));
}

function renderAttention(campaigns, channels) {
  const items = [];
  for (const c of campaigns) {
    // A campaign stopped on purpose with nothing waiting needs nobody.
    if (c.status === "sending" || c.status === "idle" || !c.not_processed) continue;
    const first = c.diagnosis[0];
    items.push(`${c.name}: ${first ? first.text : c.status}`);
  }
  for (const ch of channels) {
    if (ch.status === "down") items.push(`channel ${ch.name} is down: ${ch.last_error || "no answer"}`);
    else if (ch.fault) items.push(`channel ${ch.name}: ${ch.fault}, its messages wait: ${ch.last_error || ""}`);
  }
  $("#attention").hidden = items.length === 0;
  $("#attention-list").replaceChildren(...items.map((t) => el("li", { text: t })));
}

function fillCampaignSelects(names) {
  for (const select of document.querySelectorAll(".campaign-select")) {
    const wanted = select.value;
    const options = [];
    if (select.dataset.global) options.push(el("option", { value: "", text: "(global list)" }));
    if (select.dataset.all) options.push(el("option", { value: "", text: "(all campaigns)" }));
    for (const name of names) options.push(el("option", { value: name, text: name }));
    const same = select.options.length === options.length &&
      options.every((o, i) => select.options[i].value === o.value);
    if (same) continue;
    select.replaceChildren(...options);
    if (names.includes(wanted) || wanted === "") select.value = wanted;
  }
}

// -- campaigns ----------------------------------------------------------------
function renderCampaigns(campaigns) {
  const box = $("#campaigns");
  const seen = new Set();
  for (const c of campaigns) {
    seen.add(c.name);
    let card = state.cards.get(c.name);
    if (!card) {
      card = makeCampaignCard(c.name);
      state.cards.set(c.name, card);
      box.append(card);
    }
    updateCampaignCard(card, c);
  }
  for (const [name, card] of state.cards) {
    if (!seen.has(name)) { card.remove(); state.cards.delete(name); }
  }
  $("#no-campaigns").hidden = campaigns.length > 0;
}

function makeCampaignCard(name) {
  const card = $("#campaign-card").content.firstElementChild.cloneNode(true);
  card.dataset.campaign = name;
  $(".name", card).textContent = name;
  const dl = $(".counters", card);
  for (const [key, label] of COUNTERS) {
    dl.append(el("div", {}, el("dt", { text: label }), el("dd", { "data-key": key, text: "0" })));
  }
  $(".toggle", card).addEventListener("click", () => toggleCampaign(name));
  $(".delete", card).addEventListener("click", () => deleteUnprocessed(name, card));
  $(".edit", card).addEventListener("click", () => openSettings(card, name));
  $(".settings", card).addEventListener("submit", (e) => saveSettings(e, name));
  return card;
}

function updateCampaignCard(card, c) {
  const badge = $(".status", card);
  badge.textContent = c.status;
  badge.className = "badge status " + c.status.replace(/ /g, "-");
  card.classList.toggle("problem", !["sending", "idle"].includes(c.status));
  const sched = c.on_schedule ? "on schedule" : "off schedule";
  const pool = c.channels.length ? c.channels.join(", ") : "all SMS channels";
  $(".meta", card).textContent =
    `${c.active ? "active" : "stopped"} · ${sched} · ${pool} · priority ${c.priority}` +
    (c.time_between_ms ? ` · ${c.time_between_ms} ms between` : "");
  for (const [key] of COUNTERS) {
    const value = c[key];
    $(`[data-key="${key}"]`, card).textContent =
      value === null ? "–" : key === "cost" ? Number(value).toFixed(2) : String(value);
  }
  const toggle = $(".toggle", card);
  toggle.textContent = c.active ? "Stop" : "Start";
  toggle.className = "toggle " + (c.active ? "stop" : "start");
  toggle.dataset.active = c.active ? "1" : "0";
  renderDiagnosis($(".diagnosis", card), c, card);
}

const FIXES = { start: "Start", schedule: "Edit schedule", channels: "See channels",
  blacklist: "Manage list" };

function renderDiagnosis(ul, c, card) {
  const items = c.diagnosis.map((d) => {
    const li = el("li", { class: d.code, text: d.text });
    if (FIXES[d.fix]) {
      const button = el("button", { class: "small", text: FIXES[d.fix] });
      button.addEventListener("click", () => applyFix(d.fix, c.name, card));
      li.append(button);
    }
    return li;
  });
  const key = JSON.stringify(c.diagnosis);
  if (ul.dataset.key !== key) { ul.dataset.key = key; ul.replaceChildren(...items); }
}

function applyFix(fix, name, card) {
  if (fix === "start") return setCampaign(name, "start");
  if (fix === "schedule") { openSettings(card, name, true); return $("[name=schedule]", card).focus(); }
  if (fix === "channels") return $("#channels").scrollIntoView({ behavior: "smooth" });
  if (fix === "blacklist") return $("#dncr-one").scrollIntoView({ behavior: "smooth" });
}

async function setCampaign(name, action) {
  try { await api("POST", `/api/v1/campaigns/${encodeURIComponent(name)}/${action}`); }
  catch (err) { alert(err.message); }
  refresh();
}

function toggleCampaign(name) {
  const card = state.cards.get(name);
  setCampaign(name, $(".toggle", card).dataset.active === "1" ? "stop" : "start");
}

async function deleteUnprocessed(name, card) {
  if (!confirm(`Cancel every unprocessed message of ${name}?`)) return;
  try {
    const done = await api("DELETE", `/api/v1/campaigns/${encodeURIComponent(name)}/messages`);
    $(".meta", card).textContent = `${done.cancelled} message(s) cancelled`;
  } catch (err) { alert(err.message); }
  refresh();
}

function openSettings(card, name, forceOpen = false) {
  const form = $(".settings", card);
  if (!form.hidden && !forceOpen) { form.hidden = true; return; }
  const c = state.campaigns.find((x) => x.name === name);
  form.dncr_check.checked = c.dncr_check;
  form.channels.value = c.channels.join(", ");
  form.priority.value = c.priority;
  form.time_between_ms.value = c.time_between_ms;
  form.out_of_time_message.value = c.out_of_time_message || "";
  form.schedule.value = c.schedule ? JSON.stringify(c.schedule, null, 1) : "";
  form.hidden = false;
}

async function saveSettings(event, name) {
  event.preventDefault();
  const form = event.target;
  let schedule = null;
  try { schedule = form.schedule.value.trim() ? JSON.parse(form.schedule.value) : null; }
  catch (err) { return say(form, "schedule: " + err.message, false); }
  const body = {
    dncr_check: form.dncr_check.checked, schedule,
    channels: form.channels.value.split(",").map((s) => s.trim()).filter(Boolean),
    priority: Number(form.priority.value || 0),
    time_between_ms: Number(form.time_between_ms.value || 0),
    out_of_time_message: form.out_of_time_message.value || null,
  };
  try { await api("PATCH", `/api/v1/campaigns/${encodeURIComponent(name)}`, body); say(form, "Saved."); }
  catch (err) { say(form, err.message, false); }
  refresh();
}

// -- channels and chart ----------------------------------------------------------
function renderChannels(channels) {
  $("#channels").replaceChildren(...channels.map((ch) => {
    const card = el("article", { class: "card channel" + (ch.status === "down" ? " down" : "") });
    card.dataset.channel = ch.name;
    card.append(el("header", {}, el("h3", { text: ch.name }),
      el("span", { class: "badge " + ch.status.replace(/ /g, "-"), text: ch.status })));
    const facts = [
      ["kind", ch.kind], ["signal", ch.signal_dbm === null ? "–" : `${ch.signal_dbm} dBm`],
      ["sent/min", ch.sent_per_min ?? "–"], ["errors", `${Math.round(ch.error_rate * 100)}%`],
      ["in flight", ch.in_flight], ["today", ch.daily_limit ? `${ch.sent_today}/${ch.daily_limit}` : ch.sent_today],
    ];
    const dl = el("dl", { class: "counters" });
    for (const [k, v] of facts) dl.append(el("div", {}, el("dt", { text: k }), el("dd", { text: String(v) })));
    card.append(dl);
    if (ch.last_error) card.append(el("p", { class: "meta error", text: "last error: " + ch.last_error }));
    if (ch.blocked_until) card.append(el("p", { class: "meta", text: "resting until " + ch.blocked_until }));
    return card;
  }));
}

function renderChart(chart) {
  const NS = "http://www.w3.org/2000/svg";
  const w = 600, h = 160, pad = 22, n = chart.processed.length;
  const max = Math.max(1, ...chart.processed, ...chart.failed);
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const add = (tag, attrs) => {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    svg.append(node);
    return node;
  };
  const bw = (w - pad) / n;
  const y = (v) => h - pad - (v / max) * (h - 2 * pad);
  chart.processed.forEach((v, i) => {
    add("rect", { class: "bar-ok", x: pad + i * bw, y: y(v), width: Math.max(1, bw - 1), height: h - pad - y(v) });
    const f = chart.failed[i];
    if (f) add("rect", { class: "bar-bad", x: pad + i * bw, y: y(f), width: Math.max(1, bw - 1), height: h - pad - y(f) });
  });
  add("line", { class: "axis", x1: pad, y1: h - pad, x2: w, y2: h - pad });
  add("text", { x: 0, y: pad - 6 }).textContent = String(max);
  add("text", { x: pad, y: h - 6 }).textContent = "-60 min";
  add("text", { x: w - 30, y: h - 6 }).textContent = "now";
  $("#chart").replaceChildren(svg);
}

// -- forms ---------------------------------------------------------------------
$("#send-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = event.target;
  const body = { destination: f.destination.value, message: f.message.value,
    priority: Number(f.priority.value || 0) };
  if (f.campaign.value) body.campaign = f.campaign.value;
  try {
    const r = await api("POST", "/api/v1/messages", body);
    say(f, `Queued as #${r.id} (${r.state_name})`);
    f.message.value = "";
  } catch (err) { say(f, err.message, false); }
  refresh();
});

function upload(formId, path, summary) {
  $(formId).addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = event.target;
    try {
      const r = await api("POST", path, new FormData(f));
      const errors = (r.errors || []).slice(0, 5).map((e) => `line ${e.line}: ${e.reason}`);
      say(f, [summary(r), ...errors].join(" · "), true);
      f.reset();
    } catch (err) { say(f, err.message, false); }
    refresh();
  });
}
upload("#messages-upload", "/api/v1/messages/import", (r) =>
  `Imported ${r.imported}, blocked ${r.blocked}, invalid ${r.invalid}, rejected ${r.rejected}`);
upload("#dncr-upload", "/api/v1/blacklist/import", (r) =>
  `Added ${r.added} of ${r.valid} valid rows, rejected ${r.rejected}`);

$("#dncr-one").addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = event.target;
  const remove = event.submitter && event.submitter.value === "remove";
  const body = { destinations: [f.number.value] };
  if (f.campaign.value) body.campaign = f.campaign.value;
  try {
    const r = await api(remove ? "DELETE" : "POST", "/api/v1/blacklist", body);
    say(f, remove ? `Removed ${r.removed}` : `Added ${r.added}`);
  } catch (err) { say(f, err.message, false); }
});

$("#report-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const f = event.target;
  const q = new URLSearchParams();
  if (f.campaign.value) q.set("campaign", f.campaign.value);
  if (f.from.value) q.set("from", f.from.value + "T00:00:00Z");
  if (f.to.value) q.set("to", f.to.value + "T23:59:59Z");
  const kind = event.submitter && event.submitter.value === "daily" ? "daily.csv" : "messages.csv";
  window.location.href = `/api/v1/reports/${kind}?${q}`;
});

boot();
