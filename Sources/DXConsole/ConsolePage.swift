/// The console's one page: HTML, style and script together, served by the binary (no file on
/// disk, nothing from any other server). Everything it shows comes from `/api/state` (every
/// second) and `/api/events` (as it happens); everything it does goes through `/api/call`,
/// i.e. one dexad method with the user's own rights, and the Stop button through `/api/stop`.
enum ConsolePage {
    /// The shared worker that keeps one event stream for every tab of this console in the
    /// browser (the page's `listen`): each page joins with the names of the events it handles
    /// and is sent each one as `{name, data}`, or `{name: "lost", closed}` when the stream
    /// fails (closed: refused or ended; it is opened again after 10 s). The browser ends the
    /// worker, and with it the stream, when the last page goes.
    static let eventsWorker = #"""
"use strict";
const pages = new Set();
let source = null, names = [], retry = null, live = false;
function send(message) { for (const page of pages) page.postMessage(message); }
function relay(name) { source.addEventListener(name, e => send({ name, data: e.data })); }
function close() { if (source) { source.close(); source = null; } live = false; clearTimeout(retry); retry = null; }
function open() {
  clearTimeout(retry); retry = null;
  source = new EventSource("/api/events" + location.search);
  for (const name of names) relay(name);
  source.onopen = () => { live = true; send({ name: "open" }); };
  source.onerror = () => {
    const closed = source.readyState === EventSource.CLOSED;
    live = false;
    send({ name: "lost", closed });
    // One retry at a time, 10 s after a stream that ended for good (refused or lost).
    if (closed) { source = null; retry = setTimeout(() => { retry = null; if (!source && pages.size) open(); }, 10000); }
  };
}
onconnect = e => {
  const page = e.ports[0];
  page.onmessage = m => {
    if (m.data.leave) {
      pages.delete(page);
      // No page left (every tab closed, or kept by the browser's back-forward cache): the
      // stream goes, and its place on the console with it.
      if (!pages.size) close();
      return;
    }
    if (m.data.names) {
      pages.add(page);
      for (const name of m.data.names) if (!names.includes(name)) { names.push(name); if (source) relay(name); }
      if (!source && !retry) open();
      // A page that joins learns the stream's state now, not at its next change.
      page.postMessage(live ? { name: "open" } : { name: "lost", closed: !source });
    }
  };
  page.start();
};
"""#

    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>DX-1 console</title>
<style>
  :root { --bg: #101418; --panel: #1b2229; --text: #eef2f5; --dim: #9aa7b2; --ok: #2e9d57; --warn: #d9a400; --bad: #d23a2f; --accent: #3b82c4; }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--text); font: 20px/1.4 system-ui, sans-serif; }
  header { display: flex; gap: 16px; align-items: stretch; padding: 12px 16px; background: #0a0d10; }
  .pill { padding: 10px 18px; border-radius: 10px; background: var(--panel); font-weight: 600; }
  .pill.ok { background: var(--ok); } .pill.warn { background: var(--warn); color: #111; } .pill.bad { background: var(--bad); }
  #xray.warn { background: var(--warn); color: #111; }
  #xray { font-size: 28px; min-width: 260px; text-align: center; }
  #xray.on { background: var(--bad); animation: blink 1s steps(2) infinite; }
  @keyframes blink { 50% { background: #7a1610; } }
  #disconnected { display: none; position: fixed; inset: 0; background: rgba(10,10,10,.88); z-index: 5; align-items: center; justify-content: center;
                  font-size: 40px; text-align: center; }
  #disconnected.show { display: flex; }
  #stop-failed { position: fixed; left: 16px; right: 340px; bottom: 24px; z-index: 11; background: var(--bad); color: #fff; font-size: 26px; font-weight: 800;
                 padding: 18px; border-radius: 12px; border: 4px solid #fff; }
  main { display: grid; grid-template-columns: 420px 1fr; gap: 16px; padding: 16px; padding-bottom: 140px; }
  section { background: var(--panel); border-radius: 12px; padding: 16px; }
  h2 { margin: 0 0 12px; font-size: 24px; }
  button { font: inherit; padding: 12px 20px; border-radius: 10px; border: 0; background: var(--accent); color: white; cursor: pointer; min-height: 56px; }
  button:disabled { background: #3a444d; color: #8b969f; cursor: default; }
  button:focus-visible, input:focus-visible, select:focus-visible { outline: 4px solid #ffd34d; outline-offset: 2px; }
  #stop { position: fixed; right: 24px; bottom: 24px; width: 300px; height: 110px; font-size: 40px; font-weight: 800; background: var(--bad);
          border: 6px solid #fff; z-index: 10; }
  #stop small { display: block; font-size: 18px; font-weight: 600; }
  ul.exams { list-style: none; margin: 0; padding: 0; }
  ul.exams li { padding: 12px; border-radius: 8px; margin-bottom: 8px; background: #232c35; cursor: pointer; }
  ul.exams li.selected { outline: 3px solid var(--accent); }
  .state { float: right; font-weight: 700; }
  .state.in_progress { color: #ff8a80; } .state.completed { color: #7ee2a0; } .state.blocked, .state.aborted { color: var(--warn); }
  label { display: block; margin: 8px 0 4px; color: var(--dim); }
  input, select { font: inherit; padding: 10px; border-radius: 8px; border: 1px solid #44515c; background: #0f1418; color: var(--text); width: 100%; }
  .row { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
  .rules { margin-top: 12px; }
  .rules .block { color: #ffb4ab; } .rules .missing { color: var(--warn); } .rules .fine { color: #7ee2a0; }
  progress { width: 100%; height: 36px; }
  table { border-collapse: collapse; width: 100%; } td, th { border-bottom: 1px solid #33404b; padding: 6px 8px; text-align: left; }
  #log { max-height: 200px; overflow: auto; color: var(--dim); font-size: 16px; }
  .actions { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
  #error { color: #ffb4ab; min-height: 1.4em; }
  #image-box { float: right; margin: 0 0 12px 16px; text-align: center; color: var(--dim); font-size: 16px; }
  #reason-form, #checklist { overflow: hidden; }
  button.small { min-height: 40px; padding: 6px 14px; font-size: 17px; }
  ul.exams li.scheduled { cursor: default; }
  ul.exams li .sub { display: block; color: var(--dim); font-size: 16px; }
  .note { color: var(--dim); font-size: 17px; }
  .problem { color: var(--warn); font-size: 17px; }
  .qc-line { background: var(--warn); color: #111; padding: 8px 12px; border-radius: 8px; margin: 8px 0; font-weight: 600; }
  .warning { color: var(--warn); }
  h3 { margin: 16px 0 6px; font-size: 21px; }
  #attempts td, #attempts th { font-size: 17px; }
  #image { height: 340px; image-rendering: pixelated; background: #000; border: 2px solid #33404b; }
</style>
</head>
<body>
<header>
  <div id="xray" class="pill">X-rays off</div>
  <div id="device" class="pill">device: …</div>
  <div id="interlocks" class="pill">interlocks: …</div>
  <div id="qc" class="pill">QC: …</div>
  <div id="link" class="pill">dexad: …</div>
</header>
<div id="disconnected" role="alert"><div><span id="disconnected-title">Disconnected from dexad</span><br><small id="disconnected-detail">reconnecting… nothing shown here is current</small></div></div>
<div id="stop-failed" role="alert" hidden></div>
<main>
  <section>
    <div id="qc-panel">
      <h2>Quality control</h2>
      <div id="qc-detail" class="note"></div>
      <div class="actions"><button type="button" id="qc-run">Run QC…</button></div>
      <form id="qc-confirm" hidden>
        <div>The QC phantom on the table, centred, and nobody else in the room? The scan exposes.</div>
        <div class="actions"><button type="submit" id="qc-go">Scan the phantom</button><button type="button" id="qc-cancel">Cancel</button></div>
      </form>
    </div>
    <h2 style="margin-top:20px">Today</h2>
    <ul class="exams" id="exams"></ul>
    <h2 style="margin-top:20px">Scheduled <button type="button" class="small" id="worklist-refresh">Ask the worklist</button></h2>
    <div id="worklist-note" class="note"></div>
    <ul class="exams" id="worklist"></ul>
    <h2 style="margin-top:20px">New exam</h2>
    <form id="new-exam">
      <div class="row"><div><label for="pid">Patient ID</label><input id="pid" required></div>
      <div><label for="pname">Name</label><input id="pname" required></div></div>
      <div class="row"><div><label for="psex">Sex</label><select id="psex"><option value="female">female</option><option value="male">male</option></select></div>
      <div><label for="pbirth">Birth date</label><input id="pbirth" type="date" required></div></div>
      <label for="preferral">Referral</label><input id="preferral" required>
      <div class="actions"><button type="submit">Create exam</button></div>
    </form>
  </section>
  <section id="detail">
    <h2 id="detail-title">No exam selected</h2>
    <div id="error" role="status"></div>
    <div id="scan" hidden>
      <div id="scan-site" style="font-size:28px;font-weight:700"></div>
      <progress id="scan-progress" max="1" value="0"></progress>
      <div id="scan-text"></div>
    </div>
    <div id="image-box" hidden>
      <canvas id="image" width="1" height="1" aria-label="the scan's bone image, growing as lines arrive"></canvas>
      <div id="image-caption"></div>
    </div>
    <div class="actions" id="exam-actions"></div>
    <div id="attempts"></div>
    <form id="reason-form" hidden>
      <h2 id="reason-title"></h2>
      <div id="reason-site-row"><label for="reason-site">Site</label><select id="reason-site"></select></div>
      <div id="reason-text-row"><label for="reason-text">Reason (on the record and the report)</label><input id="reason-text" maxlength="500" required></div>
      <div class="actions"><button type="submit" id="reason-ok">Confirm</button><button type="button" id="reason-cancel">Cancel</button></div>
    </form>
    <form id="correct-form" hidden>
      <h2 id="correct-title">Correct the analysis</h2>
      <div class="row">
        <div><label for="correct-site">Site</label><select id="correct-site"></select></div>
        <div><label for="correct-kind">Correction</label><select id="correct-kind"></select></div>
      </div>
      <div class="row" id="correct-fields"></div>
      <label for="correct-reason">Reason (on the record and the report)</label><input id="correct-reason" maxlength="500" required>
      <div class="actions"><button type="submit" id="correct-ok">Apply correction</button><button type="button" id="correct-cancel">Cancel</button></div>
    </form>
    <form id="checklist" hidden>
      <h2>Checklist</h2>
      <div class="row">
        <div><label for="c-pregnancy">Pregnancy</label><select id="c-pregnancy"><option value="">—</option><option>no</option><option>yes</option><option>unknown</option></select></div>
        <div><label for="c-jewellery">Jewellery and piercings removed</label><select id="c-jewellery"><option value="">—</option><option value="true">yes</option><option value="false">no</option></select></div>
      </div>
      <div class="row">
        <div><label for="c-contrast">Contrast study (date, or none)</label><input id="c-contrast" placeholder="none or YYYY-MM-DD"></div>
        <div><label for="c-nuclear">Nuclear medicine study (date, or none)</label><input id="c-nuclear" placeholder="none or YYYY-MM-DD"></div>
      </div>
      <div class="row">
        <div><label for="c-fracture">Recent fracture at (sites, comma-separated, or none)</label><input id="c-fracture" placeholder="none"></div>
        <div><label for="c-metal">Metal at (sites, or none)</label><input id="c-metal" placeholder="none"></div>
      </div>
      <div class="row">
        <div><label for="c-height">Height (cm)</label><input id="c-height" type="number" step="0.1"></div>
        <div><label for="c-weight">Weight (kg)</label><input id="c-weight" type="number" step="0.1"></div>
      </div>
      <div class="row">
        <div><label for="c-today">Measured today</label><select id="c-today"><option value="">—</option><option value="true">yes</option><option value="false">no</option></select></div>
        <div><label for="c-identity">Identity confirmed</label><select id="c-identity"><option value="">—</option><option value="true">yes</option><option value="false">no</option></select></div>
      </div>
      <label for="c-referral">Referral confirmed</label><select id="c-referral"><option value="">—</option><option value="true">yes</option><option value="false">no</option></select>
      <div class="rules" id="rules"></div>
    </form>
    <div id="results"></div>
    <h2 style="margin-top:20px">Events</h2>
    <div id="log" aria-live="polite"></div>
  </section>
</main>
<button id="stop" title="Stop: X-rays off (Esc)"><span id="stop-label">STOP</span><small>Esc</small></button>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";

let state = {}, selected = null, progress = {}, connected = false;
const $ = id => document.getElementById(id);
function text(el, s) { el.textContent = s; }
// Every request has a time limit: a console or dexad that does not answer is unknown, never
// taken for its last answer.
async function api(path, body, ms = 3000) {
  const abort = new AbortController(), timer = setTimeout(() => abort.abort(), ms);
  try {
    const r = await fetch(path, { method: body === undefined ? "GET" : "POST", headers: { "X-Dexa-Token": token, "Content-Type": "application/json" },
                                  body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store", signal: abort.signal });
    const json = await r.json();
    json.httpStatus = r.status;
    return json;
  } finally { clearTimeout(timer); }
}
// One dexad method. Steps and scans are answered at once (202) and their result comes as a
// call.result event.
async function call(method, params) {
  const r = await api("/api/call", { method, params }, 30000);
  if (r.error) { text($("error"), method + ": " + (r.error.message || r.error)); log(method + " refused: " + (r.error.message || r.error)); throw new Error(r.error.message || r.error); }
  text($("error"), "");
  if (r.accepted) { log(method + " started"); return null; }
  return r.result;
}
function log(s) { const d = document.createElement("div"); d.textContent = new Date().toLocaleTimeString() + "  " + s; $("log").prepend(d); }
// Stop is never disabled (pressing again sends it again); a Stop that fails or is not answered
// within 6 s says so in a red banner: the scanner's emergency stop is then the way.
function stopFailed(why) {
  const b = $("stop-failed"); b.hidden = false;
  text(b, "STOP FAILED — use the scanner's emergency stop. " + why);
  log("STOP FAILED: " + why);
}
async function stop() {
  text($("stop-label"), "STOPPING");
  try {
    const r = await api("/api/stop", {}, 6000);
    if (r.httpStatus !== 200 || r.error || r.xray_on !== false) stopFailed(r.error || ("answer " + r.httpStatus));
    else {
      $("stop-failed").hidden = true;
      log("Stop: X-rays off (the unit says so)" + ((r.aborted_exams || []).length ? "; exam " + r.aborted_exams.join(", ") + " aborted" : "") +
          (r.scan && r.scan.aborted_scan_id !== undefined ? "; scan " + r.scan.aborted_scan_id + " aborted" : "") + ((r.errors || []).length ? " (" + r.errors.join("; ") + ")" : ""));
    }
  }
  catch (e) { stopFailed(e.name === "AbortError" ? "no answer within 6 s" : String(e)); }
  finally { text($("stop-label"), "STOP"); refresh(); }
}
$("stop").addEventListener("click", stop);
// Esc anywhere, before any field sees it; a held key sends one Stop.
window.addEventListener("keydown", e => { if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); if (!e.repeat) stop(); } }, true);

function render() {
  // The device's figures only from a fresh answer of dexad's; anything else is unknown.
  const d = state.device && !state.device.error && typeof state.device.xray_on === "boolean" ? state.device : null;
  connected = !!(state.daemon && state.daemon.connected);
  $("disconnected").classList.toggle("show", !connected);
  if (state.consoleGone) { text($("disconnected-title"), "This page's console has gone"); text($("disconnected-detail"), state.consoleGone); }
  else if (state.noAnswer) { text($("disconnected-title"), "No answer from the console"); text($("disconnected-detail"), "nothing shown here is current"); }
  else { text($("disconnected-title"), "Disconnected from dexad"); text($("disconnected-detail"), "reconnecting… nothing shown here is current"); }
  text($("link"), connected ? "dexad connected" : "dexad disconnected"); $("link").className = "pill " + (connected ? "ok" : "bad");
  const xray = !!d && d.xray_on === true;
  text($("xray"), !d ? "X-RAYS: UNKNOWN" : xray ? "X-RAYS ON" : "X-rays off"); $("xray").className = "pill" + (xray ? " on" : !d ? " warn" : "");
  text($("device"), d ? "device: " + (d.state || "no device") + (d.fault ? " — fault " + (d.fault_text || d.fault) : "") : connected ? "device: no answer" : "device: —");
  $("device").className = "pill " + (!d || !d.state ? "warn" : d.fault ? "bad" : "ok");
  const open = d ? (d.interlocks_open || []) : [];
  text($("interlocks"), !d ? "interlocks: —" : open.length ? "interlocks open: " + open.join(", ") : "interlocks closed");
  $("interlocks").className = "pill " + (!d ? "" : open.length ? "bad" : "ok");
  const qc = state.qc && !state.qc.error ? state.qc : {};
  const qcWords = { baseline_incomplete: "baseline incomplete", in_control: "in control", repeat_required: "repeat required", failed: "FAILED", drifted: "drifted" };
  text($("qc"), "QC: " + (qcWords[qc.condition] || "—") + (qc.due ? ", due today" : ""));
  $("qc").className = "pill " + (qc.condition === "in_control" && !qc.due ? "ok" : qc.condition === "failed" || qc.condition === "drifted" ? "bad" : qc.condition ? "warn" : "");
  $("qc").title = qc.reason || "";
  renderQC(qc, d);
  const ul = $("exams"); ul.replaceChildren();
  // Today's exams, and any older one still open.
  const today = new Date().toISOString().slice(0, 10);
  const exams = Array.isArray(state.exams) ? state.exams : [];
  const shown = exams.filter(ex => (ex.created_at || "").slice(0, 10) === today || ["created", "blocked", "ready", "in_progress"].includes(ex.state));
  if (!shown.length) { const li = document.createElement("li"); li.textContent = !connected ? "—" : Array.isArray(state.exams) ? "No exams today yet" : "the exam list did not come: retrying"; li.style.cursor = "default"; ul.append(li); }
  for (const ex of shown) {
    const li = document.createElement("li"); li.tabIndex = 0; li.dataset.id = ex.id;
    li.className = ex.id === selected ? "selected" : "";
    const s = document.createElement("span"); s.className = "state " + ex.state; s.textContent = ex.state.replace("_", " ");
    li.append(s, document.createTextNode((ex.patient && ex.patient.name || "?") + " — " + (ex.patient && ex.patient.id || "")));
    const choose = () => { if (selected !== ex.id) deselect(); selected = ex.id; render(); };
    li.addEventListener("click", choose);
    li.addEventListener("keydown", e => { if (e.key === "Enter") choose(); });
    ul.append(li);
  }
  renderDetail();
  renderWorklist();
}
// The daily QC scan (qc.run, as dexa qc run): the phantom's file is the console's setting
// (--qc-phantom); the page asks first that the phantom is on the table, as the scan exposes.
function renderQC(qc, d) {
  const phantom = state.console && state.console.qc_phantom;
  const lines = [];
  if (qc.condition) lines.push((qcWordsLong[qc.condition] || qc.condition) + (qc.due ? "; due today" : qc.last_pass ? "; passed " + qc.last_pass.slice(0, 16).replace("T", " ") : ""));
  if (qc.reason) lines.push(qc.reason);
  for (const w of (qc.warnings || [])) lines.push("! " + w);
  // What it means for patient exams when they are locked or let through by service (a
  // warning only says the reason again).
  const gate = qc.patient_exams && qc.patient_exams.gate;
  if ((gate === "blocked" || gate === "overridden") && qc.patient_exams.message) lines.push((gate === "blocked" ? "PATIENT EXAMS LOCKED: " : "") + qc.patient_exams.message);
  if (!phantom) lines.push("The QC scan needs the phantom's file: start the console with --qc-phantom FILE (dexa qc run --phantom FILE meanwhile).");
  text($("qc-detail"), lines.join("\n"));
  $("qc-detail").style.whiteSpace = "pre-line";
  const busy = (Array.isArray(state.exams) ? state.exams : []).some(e => e.state === "in_progress");
  $("qc-run").disabled = !connected || !phantom || !d || d.state !== "IDLE" || busy || qcRunning;
  $("qc-run").title = busy ? "an exam is in progress" : !d || d.state !== "IDLE" ? "the unit is not idle" : "";
}
const qcVerdicts = { baseline: "added to the baseline", pass: "passed", repeat_required: "outside the limits: scan the phantom again", fail: "FAILED" };
const qcWordsLong = { baseline_incomplete: "Baseline incomplete", in_control: "In control", repeat_required: "Repeat required: scan the phantom again", failed: "FAILED: patient exams are locked until QC passes", drifted: "Drifted: service is needed" };
let qcRunning = false;
$("qc-run").addEventListener("click", () => { $("qc-confirm").hidden = false; $("qc-go").focus(); });
$("qc-cancel").addEventListener("click", () => { $("qc-confirm").hidden = true; });
$("qc-confirm").addEventListener("submit", e => {
  e.preventDefault();
  $("qc-confirm").hidden = true;
  const phantom = state.console && state.console.qc_phantom;
  if (!phantom) return;
  qcRunning = true;
  call("qc.run", { phantom }).then(() => {}, () => { qcRunning = false; }).finally(refresh);
});
const siteNames = { ap_spine: "AP spine", left_hip: "left hip", right_hip: "right hip", lateral_spine: "lateral spine (VFA)" };
const site = s => siteNames[s] || s;
const allSites = ["ap_spine", "left_hip", "right_hip", "lateral_spine"];
// Another exam chosen: nothing of the last one stays on screen (its results, a correction or
// a reason being typed for it).
function deselect() {
  showResults(null);
  correcting = null; $("correct-form").hidden = true;
  asking = null; $("reason-form").hidden = true;
}
// Sites exam.add takes: one not in the plan, or one skipped (added again at the end).
function addable(ex) {
  const latest = s => (ex.attempts || []).filter(a => a.site === s).slice(-1)[0];
  return allSites.filter(s => !(ex.plan || []).includes(s) || (latest(s) && latest(s).status === "skipped"));
}
function exam() { return (Array.isArray(state.exams) ? state.exams : []).find(e => e.id === selected); }
const fixed = (v, n) => v === null || v === undefined ? "—" : Number(v).toFixed(n);
const signed = (v, n) => v === null || v === undefined ? "—" : (v > 0 ? "+" : v < 0 ? "−" : "") + Math.abs(Number(v)).toFixed(n);
function cell(tr, v, tag = "td") { const c = document.createElement(tag); c.textContent = v; tr.append(c); return c; }
function table(headings) { const t = document.createElement("table"); const tr = document.createElement("tr"); for (const h of headings) cell(tr, h, "th"); t.append(tr); return t; }
function para(parent, words, cls) { const d = document.createElement("div"); d.textContent = words; if (cls) d.className = cls; parent.append(d); return d; }
// Every attempt of the exam: its state, lines, the quick look's figures (bone found, its mean
// BMD: what the technologist checks before moving on) and its warnings, as dexa exam show.
function renderAttempts(ex) {
  const div = $("attempts"); div.replaceChildren();
  const attempts = ex.attempts || [];
  if (!attempts.length) return;
  const h = document.createElement("h3"); h.textContent = "Sites"; div.append(h);
  const t = table(["site", "#", "state", "lines", "quick look", ""]);
  for (const a of attempts) {
    const tr = document.createElement("tr");
    cell(tr, site(a.site)); cell(tr, String(a.attempt)); cell(tr, a.status.replace("_", " "));
    cell(tr, a.planned_lines ? a.lines + " of " + a.planned_lines : "—");
    const q = a.quick_look;
    cell(tr, !q ? "—" : q.mean_bone_bmd_g_cm2 !== undefined && q.mean_bone_bmd_g_cm2 !== null
      ? "bone " + fixed(q.bone_area_cm2, 1) + " cm², mean " + fixed(q.mean_bone_bmd_g_cm2, 3) + " g/cm²" + (q.complete === false ? " (incomplete)" : "")
      : (q.note || "no bone found"));
    const notes = [];
    if (a.reason && a.status !== "completed") notes.push(a.reason);
    for (const w of (a.warnings || [])) notes.push("! " + w.message);
    if (a.analysis_note) notes.push(a.analysis_note);
    const c = cell(tr, notes.join("; ")); if ((a.warnings || []).length) c.className = "warning";
    t.append(tr);
  }
  div.append(t);
}
function renderDetail() {
  const ex = exam();
  renderImageBox();
  $("checklist").hidden = !ex || !["created", "blocked", "ready"].includes(ex.state);
  const actions = $("exam-actions"); actions.replaceChildren();
  if (!ex) { text($("detail-title"), "No exam selected"); $("attempts").replaceChildren(); return; }
  text($("detail-title"), (ex.patient && ex.patient.name) + " — " + ex.state.replace("_", " ") + " — plan: " + (ex.plan || []).map(site).join(", "));
  const button = (label, fn, enabled = true) => { const b = document.createElement("button"); b.textContent = label; b.disabled = !enabled || !connected; b.addEventListener("click", fn); actions.append(b); };
  const running = ex.state === "in_progress" && (ex.attempts || []).some(a => a.status === "running");
  button("Start", () => call("exam.start", { exam_id: ex.id }).then(refresh, refresh), ex.state === "ready");
  button("Next site", () => call("exam.next", { exam_id: ex.id }).then(refresh, refresh), ex.state === "in_progress" && !running);
  button("Repeat", () => call("exam.repeat", { exam_id: ex.id }).then(refresh, refresh), ex.state === "in_progress" && !running);
  button("Skip site…", () => askReason("skip", ex), ex.state === "in_progress" && !running);
  // Once the exam runs (before, an answer to the checklist plans the sites again from the answers).
  button("Add site…", () => askReason("add", ex), ex.state === "in_progress" && !running && addable(ex).length > 0);
  button("Results", () => loadResults(ex.id), ["in_progress", "completed"].includes(ex.state));
  const analysed = (ex.attempts || []).some(a => a.status === "completed");
  button("Correct…", () => askCorrection(ex), ["in_progress", "completed"].includes(ex.state) && !running && analysed);
  // Not while a scan runs: Stop is the way then (a prompt would hold the page, and Stop, while open).
  button("Abort exam…", () => askReason("abort", ex), ["ready", "in_progress", "blocked", "created"].includes(ex.state) && !running);
  const p = progress[ex.id];
  $("scan").hidden = !running || !p;
  if (running && p) {
    text($("scan-site"), "Scanning " + site(p.site) + " — keep the patient still");
    $("scan-progress").max = p.planned_lines || 1; $("scan-progress").value = p.lines || 0;
    text($("scan-text"), p.lines + " of " + p.planned_lines + " lines" + (p.eta_s !== undefined ? ", " + Math.round(p.eta_s) + " s left" : "") + (p.gaps ? ", " + p.gaps + " gaps" : ""));
  }
  renderAttempts(ex);
  // A site done (or an exam chosen that has one): its results and images without a click,
  // once for each number of completed sites; not for an exam aborted or not yet begun.
  const completed = (ex.attempts || []).filter(a => a.status === "completed").length;
  const key = ex.id + ":" + completed + ":" + ex.state;
  if (completed > 0 && ["in_progress", "completed"].includes(ex.state) && resultsKey !== key) { resultsKey = key; loadResults(ex.id); }
  const cl = ex.checklist || {};
  const rules = $("rules"); rules.replaceChildren();
  for (const b of (cl.blocks || [])) { const d = document.createElement("div"); d.className = "block"; d.textContent = "Blocked: " + b.item + " — " + b.reason + (b.earliest_date ? " (possible from " + b.earliest_date + ")" : ""); rules.append(d); }
  for (const m of (cl.missing || [])) { const d = document.createElement("div"); d.className = "missing"; d.textContent = "Still to answer: " + m; rules.append(d); }
  for (const f of (cl.findings || [])) { const d = document.createElement("div"); d.className = "fine"; d.textContent = "Note: " + (f.message || JSON.stringify(f)); rules.append(d); }
  if (cl.complete) { const d = document.createElement("div"); d.className = "fine"; d.textContent = "Checklist complete: plan " + (cl.plan || ex.plan || []).join(", "); rules.append(d); }
}
// The site's bone image, row by row as dexad decomposes the lines (scan.image: a byte a pixel,
// 0 no number, 1-255 0 to full scale g/cm²), shown 0-1.5 g/cm² black to white; red where a
// pixel has no number (metal, saturation).
let image = null;
function drawRows(n) {
  if (!n.rows || !n.rows.length) return;
  const key = n.exam_id + "/" + n.site;
  if (!image || image.key !== key) {
    const width = atob(n.rows[0].bone).length, height = Math.max(1, n.planned_lines);
    const c = $("image"); c.width = width; c.height = height;
    const ctx = c.getContext("2d"); ctx.fillStyle = "#000"; ctx.fillRect(0, 0, width, height);
    image = { key, exam: n.exam_id, site: n.site, ctx, width, height, rows: 0 };
  }
  for (const r of n.rows) {
    const b = atob(r.bone), row = image.ctx.createImageData(image.width, 1);
    for (let i = 0; i < image.width && i < b.length; i++) {
      const v = b.charCodeAt(i), g = Math.min(255, Math.round((v - 1) / 254 * n.full_scale_g_cm2 / 1.5 * 255));
      row.data.set(v === 0 ? [150, 0, 0, 255] : [g, g, g, 255], 4 * i);
    }
    if (r.line >= 0 && r.line < image.height) image.ctx.putImageData(row, 0, r.line);
    image.rows++;
  }
  renderImageBox();
}
function renderImageBox() {
  const show = !!image && image.exam === selected && !!exam();
  $("image-box").hidden = !show;
  if (show) text($("image-caption"), site(image.site) + ": " + image.rows + " of " + image.height + " lines");
}
// A reason asked for in the page (a browser prompt would hold the page, and Stop with it).
let asking = null;
function askReason(kind, ex) {
  asking = { kind, exam: ex.id };
  const who = ex.patient && ex.patient.name;
  text($("reason-title"), kind === "skip" ? "Skip a site of " + who : kind === "add" ? "Add a site to the plan of " + who : "Abort the exam of " + who);
  $("reason-site-row").hidden = kind === "abort";
  $("reason-text-row").hidden = kind === "add";
  $("reason-text").required = kind !== "add";
  const sel = $("reason-site"); sel.replaceChildren();
  const done = new Set((ex.attempts || []).filter(a => a.status === "completed" || a.status === "skipped").map(a => a.site));
  const choices = kind === "add" ? addable(ex) : (ex.plan || []).filter(s => !done.has(s));
  for (const s of choices) { const o = document.createElement("option"); o.value = s; o.textContent = site(s); sel.append(o); }
  $("reason-text").value = "";
  $("reason-form").hidden = false;
  (kind === "add" ? sel : $("reason-text")).focus();
}
$("reason-cancel").addEventListener("click", () => { asking = null; $("reason-form").hidden = true; });
$("reason-form").addEventListener("submit", e => {
  e.preventDefault();
  if (!asking) return;
  const reason = $("reason-text").value.trim();
  const done = () => { asking = null; $("reason-form").hidden = true; refresh(); };
  if (asking.kind === "add") { call("exam.add", { exam_id: asking.exam, site: $("reason-site").value }).then(done, refresh); return; }
  if (!reason) return;
  if (asking.kind === "skip") call("exam.skip", { exam_id: asking.exam, site: $("reason-site").value, reason }).then(done, refresh);
  else call("exam.abort", { exam_id: asking.exam, reason }).then(done, refresh);
});
// The exam's results as dexa exam report gives them: per site its regions (BMD, T, Z, BMC,
// area; the excluded ones with their reason), its classification, warnings and corrections; the
// lateral spine's vertebrae with their heights and Genant grades; the diagnosis, the change since
// the last exam, the VFA indication, the dose; QC's objections on top.
let results = null, resultsKey = null;
// Only the newest request's answer, and only while its exam is still the one selected: an
// answer for another exam is never shown under this one's name.
let resultsAsked = 0;
function loadResults(id) {
  const n = ++resultsAsked;
  return call("exam.results", { exam_id: id }).then(r => { if (n === resultsAsked && r && r.exam_id === selected) showResults(r); }, () => {});
}
const roiNames = { neck: "femoral neck", total_hip: "total hip", trochanter: "trochanter", intertrochanter: "intertrochanter", wards: "Ward's area" };
const whoWords = { normal: "normal", low_bone_mass: "low bone mass (osteopenia)", osteoporosis: "osteoporosis" };
function showResults(r) {
  results = r;
  const div = $("results"); div.replaceChildren();
  if (!r) { resultsKey = null; return; }
  const h = document.createElement("h2");
  h.textContent = "Results of " + r.patient.name + " (" + r.patient.id + "), exam " + r.exam_id + (r.diagnosis && r.diagnosis.words ? ": " + r.diagnosis.words : "");
  div.append(h);
  for (const q of (r.quality_control || [])) para(div, "QUALITY CONTROL: " + q, "qc-line");
  const d = r.diagnosis || {};
  if (d.t_score !== undefined && d.t_score !== null && d.roi) para(div, "Lowest T-score " + signed(d.t_score, 1) + " at " + (roiNames[d.roi] || d.roi) + " (" + site(d.site) + "); WHO classes apply to " + d.basis);
  else if (d.z_score !== undefined && d.z_score !== null && d.roi) para(div, "Lowest Z-score " + signed(d.z_score, 1) + " at " + (roiNames[d.roi] || d.roi) + " (" + site(d.site) + "); Z-scores apply to " + d.basis);
  if (d.note) para(div, d.note, "note");
  const actions = document.createElement("div"); actions.className = "actions";
  const report = document.createElement("button");
  report.textContent = "Report (PDF): view and print";
  report.title = "Opens the report in the browser's PDF viewer, whose print button prints it";
  report.addEventListener("click", () => window.open("/api/report?exam=" + encodeURIComponent(r.exam_id) + "&token=" + encodeURIComponent(token), "_blank", "noopener"));
  actions.append(report); div.append(actions);
  for (const s of (r.sites || [])) {
    const sh = document.createElement("h3"); sh.textContent = (s.title || site(s.site)) + (s.attempt ? " (attempt " + s.attempt + ")" : ""); div.append(sh);
    const res = s.result;
    if (!res) { para(div, "no result: " + (s.note || s.status.replace("_", " ")), "note"); continue; }
    if (res.vfa) {
      const t = table(["vertebra", "anterior mm", "middle mm", "posterior mm", "grade", "type", ""]);
      for (const v of (res.vfa.vertebrae || [])) {
        const tr = document.createElement("tr");
        cell(tr, v.name);
        if (!v.readable) { cell(tr, "not readable: " + (v.reason || "")).colSpan = 6; t.append(tr); continue; }
        cell(tr, fixed(v.anterior_mm, 1)); cell(tr, fixed(v.middle_mm, 1)); cell(tr, fixed(v.posterior_mm, 1));
        const g = cell(tr, v.grade === undefined || v.grade === null ? "—" : (v.uncertain_height && !v.grade_by ? "≥" : "") + v.grade);
        if (v.grade >= 2) g.className = "warning";
        cell(tr, v.type ? v.type + (v.grade_by ? "" : " (" + Math.round((v.height_loss || 0) * 100) + " % lost)") : "");
        const notes = [];
        if (v.grade_by) notes.push("the reader's grade; measured " + (v.measured_grade === undefined || v.measured_grade === null ? "—" : v.measured_grade));
        if (v.points_by) notes.push("points placed by the reader");
        if (v.uncertain_height && !v.grade_by && v.reason) notes.push(v.reason);
        cell(tr, notes.join("; "));
        t.append(tr);
      }
      div.append(t);
      const fractured = (res.vfa.vertebrae || []).filter(v => (v.grade || 0) >= 1);
      para(div, fractured.length ? "Fractures (Genant): " + fractured.map(v => v.name + " grade " + v.grade + (v.type ? " " + v.type : "")).join("; ") : "No vertebral fracture found", fractured.length ? "warning" : "");
    } else {
      const t = table(["region", "BMD g/cm²", "T", "Z", "BMC g", "area cm²", ""]);
      for (const roi of (res.rois || [])) {
        const tr = document.createElement("tr");
        const measured = roi.bmd_g_cm2 !== undefined && roi.bmd_g_cm2 !== null;
        cell(tr, roiNames[roi.name] || roi.name); cell(tr, fixed(roi.bmd_g_cm2, 3)); cell(tr, signed(roi.t_score, 1)); cell(tr, signed(roi.z_score, 1));
        cell(tr, measured ? fixed(roi.bmc_g, 2) : "—"); cell(tr, measured ? fixed(roi.area_cm2, 2) : "—");
        cell(tr, roi.excluded ? "excluded" + (roi.reason ? ": " + roi.reason : "") : roi.complete === false ? "incomplete" : roi.for_diagnosis === false ? "not for diagnosis" : "");
        t.append(tr);
      }
      div.append(t);
      const i = res.interpretation;
      if (i && i.who_class) para(div, "WHO classification: " + (whoWords[i.who_class] || i.who_class) + " (for " + i.basis + ")");
      if (i && i.z_interpretation) para(div, "Z-score " + (i.z_interpretation === "below_expected_range" ? "below" : "within") + " the expected range for age (for " + i.basis + ")");
      if (i && i.note) para(div, i.basis + ": " + i.note, "note");
    }
    for (const w of (res.warnings || [])) para(div, "! " + w.message, "warning");
    for (const c of (s.corrections || [])) para(div, "Corrected by " + c.by + " at " + c.at + ": " + c.change + " (" + c.reason + ")", "note");
    if (s.dose) para(div, "dose " + fixed(s.dose.dap_mgy_cm2, 2) + " mGy·cm²", "note");
  }
  const f = r.follow_up;
  if (f) {
    const fh = document.createElement("h3"); fh.textContent = "Since exam " + f.prior.exam_id + " of " + f.prior.exam_date; div.append(fh);
    const t = table(["site", "region", "prior", "now g/cm²", "change", "%", "LSC", "significant"]);
    for (const c of (f.changes || [])) {
      const tr = document.createElement("tr");
      cell(tr, site(c.site)); cell(tr, roiNames[c.roi] || c.roi); cell(tr, fixed(c.prior_bmd_g_cm2, 3)); cell(tr, fixed(c.bmd_g_cm2, 3));
      cell(tr, signed(c.change_g_cm2, 3)); cell(tr, signed(c.change_percent, 1)); cell(tr, fixed(c.lsc_g_cm2, 3));
      cell(tr, c.significant === undefined || c.significant === null ? "not judged" : c.significant ? (c.change_g_cm2 < 0 ? "yes, a loss" : "yes, a gain") : "no");
      t.append(tr);
    }
    div.append(t);
    for (const n of (f.notes || [])) para(div, n, "note");
  }
  const v = r.vfa_indication;
  if (v) para(div, "VFA " + (v.indicated ? "indicated" : "not indicated") + " (ISCD 2019): " + (v.reasons || []).join("; ") + ((v.unanswered || []).length ? " — not answered: " + v.unanswered.join(", ") : ""));
  if (r.dose) para(div, "Exam dose: " + fixed(r.dose.dap_mgy_cm2, 2) + " mGy·cm² DAP over " + r.dose.scans + " scans" + (r.dose.estimated ? " (estimated in part)" : ""), "note");
  para(div, "Reference " + r.reference + "; analysis " + r.analysis_version, "note");
  const images = document.createElement("div");
  images.style.display = "flex"; images.style.flexWrap = "wrap"; images.style.gap = "12px"; images.style.marginTop = "12px";
  for (const s of (r.sites || []).filter(s => s.result)) {
    const fig = document.createElement("figure"); fig.style.margin = "0";
    const img = document.createElement("img");
    img.alt = (s.title || site(s.site)) + " with its analysis";
    img.style.height = "320px"; img.style.background = "#000";
    img.src = "/api/site-image?exam=" + encodeURIComponent(r.exam_id) + "&site=" + encodeURIComponent(s.site) + "&attempt=" + encodeURIComponent(s.attempt || 0) + "&corrections=" + (s.corrections || []).length + "&token=" + encodeURIComponent(token);
    const cap = document.createElement("figcaption"); cap.textContent = s.title || site(s.site);
    img.addEventListener("error", () => { cap.textContent = (s.title || site(s.site)) + ": the image could not be shown (the results may have changed: press Results)"; cap.className = "warning"; });
    fig.append(img, cap); images.append(fig);
  }
  div.append(images);
}
// A correction of a site's analysis (exam.correct), as dexa exam correct makes it: the kinds
// each site has, the reason always; made on the attempt whose results are on screen (dexad
// refuses it if that site's result has since become another attempt's).
const vertebraNames = ["T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4"];
const correctionKinds = {
  ap_spine: [
    { value: "relabel", label: "Relabel a vertebra", fields: [{ id: "from", label: "The vertebra now called", options: ["T11", "T12", "L1", "L2", "L3", "L4", "L5"] }, { id: "to", label: "is", options: ["T11", "T12", "L1", "L2", "L3", "L4", "L5"] }] },
    { value: "l4", label: "L4 is the level at y", fields: [{ id: "y", label: "y on the table (mm)", number: true }] },
    { value: "discs", label: "Place the disc lines", fields: [{ id: "lines", label: "every disc line's y (mm), top to bottom, comma-separated" }] },
    { value: "reset", label: "Back to the automatic ROIs", fields: [] }],
  left_hip: [
    { value: "neck", label: "Move the neck box", fields: [{ id: "shift", label: "along the neck (mm, + towards the trochanter)", number: true }] },
    { value: "reset", label: "Back to the automatic ROIs", fields: [] }],
  lateral_spine: [
    { value: "grade", label: "Grade a vertebra", fields: [{ id: "vertebra", label: "Vertebra", options: vertebraNames }, { id: "grade", label: "Genant grade", options: ["0", "1", "2", "3"] }, { id: "type", label: "Type (grade 1 and over)", options: ["", "wedge", "biconcave", "crush"] }] },
    { value: "points", label: "Place a vertebra's six points", fields: [{ id: "vertebra", label: "Vertebra", options: vertebraNames }, { id: "points", label: "six x,y in mm: upper endplate posterior, middle, anterior, then the lower's (x,y x,y …)" }] },
    { value: "restore", label: "A vertebra back to the analysis", fields: [{ id: "vertebra", label: "Vertebra", options: vertebraNames }] },
    { value: "reset", label: "Back to the analysis for every vertebra", fields: [] }]
};
correctionKinds.right_hip = correctionKinds.left_hip;
let correcting = null;
async function askCorrection(ex) {
  if (!results || results.exam_id !== ex.id) await loadResults(ex.id);
  if (!results || results.exam_id !== ex.id) return;
  // The attempt each site's numbers on screen come from, kept from now: dexad refuses the
  // correction if that site's result has since become another attempt's.
  correcting = { exam: ex.id, attempts: Object.fromEntries((results.sites || []).map(s => [s.site, s.attempt])) };
  const sel = $("correct-site"); sel.replaceChildren();
  for (const s of (results.sites || []).filter(s => s.result && correctionKinds[s.site])) { const o = document.createElement("option"); o.value = s.site; o.textContent = s.title || site(s.site); sel.append(o); }
  text($("correct-title"), "Correct the analysis of " + (ex.patient && ex.patient.name));
  $("correct-reason").value = "";
  fillCorrectionKinds();
  $("correct-form").hidden = false;
  sel.focus();
}
function fillCorrectionKinds() {
  const kinds = correctionKinds[$("correct-site").value] || [];
  const sel = $("correct-kind"); sel.replaceChildren();
  for (const k of kinds) { const o = document.createElement("option"); o.value = k.value; o.textContent = k.label; sel.append(o); }
  fillCorrectionFields();
}
function fillCorrectionFields() {
  const kind = (correctionKinds[$("correct-site").value] || []).find(k => k.value === $("correct-kind").value);
  const box = $("correct-fields"); box.replaceChildren();
  for (const f of (kind ? kind.fields : [])) {
    const wrap = document.createElement("div");
    const label = document.createElement("label"); label.htmlFor = "cf-" + f.id; label.textContent = f.label;
    let input;
    if (f.options) { input = document.createElement("select"); for (const v of f.options) { const o = document.createElement("option"); o.value = v; o.textContent = v || "—"; input.append(o); } }
    else { input = document.createElement("input"); if (f.number) { input.type = "number"; input.step = "0.1"; } input.required = true; }
    input.id = "cf-" + f.id;
    wrap.append(label, input); box.append(wrap);
  }
}
$("correct-site").addEventListener("change", fillCorrectionKinds);
$("correct-kind").addEventListener("change", fillCorrectionFields);
$("correct-cancel").addEventListener("click", () => { correcting = null; $("correct-form").hidden = true; });
$("correct-form").addEventListener("submit", e => {
  e.preventDefault();
  if (!correcting) return;
  if (correcting.exam !== selected) { correcting = null; $("correct-form").hidden = true; return; }
  const siteName = $("correct-site").value, kind = $("correct-kind").value, reason = $("correct-reason").value.trim();
  if (!reason) return;
  const v = id => $("cf-" + id).value.trim();
  const params = { exam_id: correcting.exam, site: siteName, reason };
  if (correcting.attempts[siteName]) params.attempt = correcting.attempts[siteName];
  const numbers = t => t.split(/[\s,]+/).filter(Boolean).map(Number);
  if (kind === "relabel") params.relabel = { from: v("from"), to: v("to") };
  else if (kind === "l4") params.l4_y_mm = Number(v("y"));
  else if (kind === "discs") params.disc_lines_mm = numbers(v("lines"));
  else if (kind === "neck") params.neck_box_shift_mm = Number(v("shift"));
  else if (kind === "grade") { params.vertebra_grade = { vertebra: v("vertebra"), grade: Number(v("grade")) }; if (v("type")) params.vertebra_grade.type = v("type"); }
  else if (kind === "points") { const n = numbers(v("points")); const pts = []; for (let i = 0; i + 1 < n.length; i += 2) pts.push([n[i], n[i + 1]]); params.vertebra_points = { vertebra: v("vertebra"), points: pts }; }
  else if (kind === "restore") params.vertebra_restore = v("vertebra");
  else if (kind === "reset") params.reset = true;
  call("exam.correct", params).then(r => {
    log("correction of the " + site(siteName) + ": " + ((r && r.correction && r.correction.change) || "done"));
    correcting = null; $("correct-form").hidden = true; loadResults(params.exam_id);
  }, () => {});
});
// Today's scheduled patients from the hospital's worklist (as dexa worklist): an exam is
// created from an item with the patient and the order as the worklist gives them, nothing
// retyped; an item already made into an exam says which.
// The console answers at once with the last listing it has and asks the worklist in the
// background (a slow RIS never holds one of the browser's connections, which Stop needs);
// while it asks, the page looks again every 2 s.
let worklist = null, worklistTimer = null;
const creating = new Set();
async function loadWorklist(refresh = false) {
  clearTimeout(worklistTimer); worklistTimer = null;
  let w;
  try { w = await api("/api/worklist" + (refresh ? "?refresh=1" : ""), undefined, 3000); }
  catch (e) { w = { configured: true, error: e.name === "AbortError" ? "the console did not answer" : String(e) }; }
  worklist = w;
  renderWorklist();
  if (w.refreshing) worklistTimer = setTimeout(() => loadWorklist(false), 2000);
}
function renderWorklist() {
  const ul = $("worklist"); ul.replaceChildren();
  const w = worklist;
  if (!w) return;
  const items = Array.isArray(w.items) ? w.items : [];
  text($("worklist-note"), (w.refreshing ? "asking the worklist… " : "") + (w.error ? "Worklist: " + w.error : w.configured === false ? (w.note || "no worklist") : w.configured !== true ? "" : items.length ? "" : "Nothing scheduled for " + w.station + " on " + w.date));
  for (const why of (w.left_out || [])) para(ul, "left out: " + why, "problem");
  const exams = Array.isArray(state.exams) ? state.exams : [];
  for (const item of items) {
    const li = document.createElement("li"); li.className = "scheduled";
    const time = (item.scheduled_start || "").length > 11 ? item.scheduled_start.slice(11) + "  " : "";
    li.append(document.createTextNode(time + (item.display_name || item.patient_name) + " — " + item.patient_id));
    const sub = document.createElement("span"); sub.className = "sub";
    sub.textContent = [item.patient_sex || "?", "born " + (item.birth_date || "?"), item.requested_procedure_description, "accession " + item.accession_number].filter(Boolean).join(" · ");
    li.append(sub);
    const made = exams.find(ex => ex.scheduled && ex.scheduled.accession_number === item.accession_number && ex.scheduled.study_instance_uid === item.study_instance_uid);
    if (made) {
      const b = document.createElement("button"); b.className = "small"; b.textContent = "Exam " + made.id + " (" + made.state.replace("_", " ") + ")";
      b.addEventListener("click", () => { if (selected !== made.id) deselect(); selected = made.id; render(); });
      li.append(b);
    } else if (item.registration) {
      const b = document.createElement("button"); b.className = "small"; b.textContent = "Create exam"; b.disabled = !connected;
      // Once: a second press would make a second exam for the same order.
      b.addEventListener("click", () => {
        b.disabled = true; creating.add(item.accession_number);
        call("exam.create", item.registration).then(ex => { deselect(); selected = ex.id; refresh(); }, () => {}).finally(() => creating.delete(item.accession_number));
      });
      if (creating.has(item.accession_number)) b.disabled = true;
      li.append(b);
    } else para(li, item.problem || "this item cannot start an exam", "problem");
    ul.append(li);
  }
}
$("worklist-refresh").addEventListener("click", () => loadWorklist(true));
function answers() {
  const v = id => $(id).value.trim();
  const a = {};
  if (v("c-pregnancy")) a.pregnancy = v("c-pregnancy");
  if (v("c-jewellery")) a.jewellery_removed = v("c-jewellery") === "true";
  if (v("c-contrast")) a.contrast = v("c-contrast");
  if (v("c-nuclear")) a.nuclear_medicine = v("c-nuclear");
  const sites = s => s === "none" ? [] : s.split(",").map(x => x.trim()).filter(Boolean);
  if (v("c-fracture")) a.recent_fracture = sites(v("c-fracture"));
  if (v("c-metal")) a.metal = sites(v("c-metal"));
  if (v("c-height")) a.height_cm = Number(v("c-height"));
  if (v("c-weight")) a.weight_kg = Number(v("c-weight"));
  if (v("c-today")) a.measured_today = v("c-today") === "true";
  if (v("c-identity")) a.identity_confirmed = v("c-identity") === "true";
  if (v("c-referral")) a.referral_confirmed = v("c-referral") === "true";
  return a;
}
$("checklist").addEventListener("change", () => { const ex = exam(); if (ex) call("exam.checklist", { exam_id: ex.id, answers: answers() }).then(refresh, refresh); });
$("new-exam").addEventListener("submit", e => {
  e.preventDefault();
  call("exam.create", { patient: { id: $("pid").value.trim(), name: $("pname").value.trim(), sex: $("psex").value, birth_date: $("pbirth").value },
                        referral: $("preferral").value.trim() }).then(ex => { deselect(); selected = ex.id; $("new-exam").reset(); refresh(); }, () => {});
});
// One state request at a time, the newest answer only: a slow answer never overwrites a newer one.
let asked = 0, answered = 0, inFlight = false;
async function refresh() {
  if (inFlight) return;
  inFlight = true;
  const n = ++asked;
  let next;
  try {
    next = await api("/api/state");
    if (next.httpStatus === 403) next = { daemon: { connected: false }, consoleGone: "The console was restarted (a new session): open it again from the desktop entry" };
  } catch (e) { next = { daemon: { connected: false }, noAnswer: true }; }
  finally { inFlight = false; }
  if (n < answered) return;
  answered = n;
  state = next;
  if (selected === null && Array.isArray(state.exams)) { const running = state.exams.find(e => e.state === "in_progress"); if (running) selected = running.id; }
  render();
}
// What each kind of live event does on the page (the data parsed).
const handlers = {
  "daemon": d => { log(d.connected ? "dexad connected" : "dexad disconnected"); refreshIfSeen(); },
  "scan.progress": p => { if (p.exam_id !== undefined) progress[p.exam_id] = p; renderDetail(); },
  "scan.image": rows => drawRows(rows),
  "exam.step": s => {
    log("exam " + s.exam_id + ": " + site(s.site) + " " + s.phase.replace("_", " "));
    // A new attempt: its progress and image start afresh.
    if (s.phase === "positioning") { delete progress[s.exam_id]; if (image && image.exam === s.exam_id) { image = null; $("image-box").hidden = true; } }
    refreshIfSeen();
  },
  "call.result": c => {
    if (c.method === "qc.run") qcRunning = false;
    if (c.error) { text($("error"), c.method + ": " + (c.error.message || JSON.stringify(c.error))); log(c.method + " failed: " + (c.error.message || "")); }
    else if (c.method === "qc.run" && c.result) {
      const bmd = Object.entries(c.result.bmd_g_cm2 || {}).map(([k, v]) => k + " " + Number(v).toFixed(3)).join(", ");
      log("QC: " + (qcVerdicts[c.result.verdict] || c.result.verdict) + (bmd ? " (" + bmd + " g/cm²)" : ""));
    }
    else log(c.method + ": " + ((c.result && c.result.message) || "done"));
    refreshIfSeen();
  },
  "exam.warning": w => log("WARNING " + (w.site ? site(w.site) + ": " : "") + w.message),
  "event": ev => {
    const words = { state: () => "device " + (ev.old || "?") + " → " + (ev.new || "?"), scan_started: () => "scan " + ev.scan_id + " started",
                    scan_complete: () => "scan " + ev.scan_id + " complete, " + ev.lines + " lines", scan_aborted: () => "scan " + ev.scan_id + " aborted (" + ev.reason + ")",
                    interlocks: () => "interlocks " + ((ev.interlocks_open || []).length ? "open: " + ev.interlocks_open.join(", ") : "closed"),
                    fault: () => "FAULT " + (ev.fault || ev.code) + ": " + (ev.message || ""), link_lost: () => "device link lost: " + (ev.reason || ""),
                    connected: () => "device " + (ev.serial || "") + " connected" };
    log(words[ev.type] ? words[ev.type]() : "device: " + ev.type);
    refreshIfSeen();
  },
};
function handle(name, data) {
  const h = handlers[name];
  if (!h) return;
  let value;
  try { value = JSON.parse(data); } catch (e) { log("an event that is not JSON was left out (" + name + ")"); return; }
  h(value);
}
const streamOffText = "Live events are off on this page (too many browsers on this console, or the console restarted); the state still updates every second, and the stream is tried again every 10 s.";
// A stream refused (too many browsers listening) or lost: the page says so and keeps polling;
// the scan's progress it showed may be stale, so it goes (the state brings it back).
function streamLost(closed) {
  for (const k of Object.keys(progress)) delete progress[k];
  if (closed) text($("error"), streamOffText);
  refresh();
}
function streamOpen() { if ($("error").textContent === streamOffText) text($("error"), ""); }
// Every tab of this console in the browser shares one stream, kept by a shared worker: tabs
// then cost no connections, and the browser's six to this server stay free for the pages'
// requests and Stop. Without shared workers (or should its script not load), a stream of the
// page's own.
let ownStream = false;
function listenAlone() {
  if (ownStream) return;
  ownStream = true;
  const es = new EventSource("/api/events?token=" + encodeURIComponent(token));
  for (const name of Object.keys(handlers)) es.addEventListener(name, e => handle(name, e.data));
  es.onopen = streamOpen;
  es.onerror = () => {
    const closed = es.readyState === EventSource.CLOSED;
    streamLost(closed);
    if (closed) setTimeout(() => { ownStream = false; listenAlone(); }, 10000);
  };
}
function listen() {
  if (typeof SharedWorker !== "function") return listenAlone();
  let worker;
  try { worker = new SharedWorker("/api/events-worker.js?token=" + encodeURIComponent(token)); } catch (e) { return listenAlone(); }
  // The worker's script failed: a stream of the page's own, the worker's port closed first
  // (never both, which would bring every event twice).
  worker.onerror = () => { worker.port.onmessage = null; worker.port.close(); listenAlone(); };
  worker.port.onmessage = m => {
    if (m.data.name === "lost") streamLost(m.data.closed);
    else if (m.data.name === "open") streamOpen();
    else handle(m.data.name, m.data.data);
  };
  worker.port.start();
  worker.port.postMessage({ names: Object.keys(handlers) });
  addEventListener("pagehide", () => worker.port.postMessage({ leave: true }));
  // Back from the browser's back-forward cache: the worker may have ended meanwhile, so a
  // new one (or the same, if it still runs) is joined afresh.
  addEventListener("pageshow", e => { if (e.persisted) { worker.port.onmessage = null; worker.port.close(); listen(); } });
}
// Every tab has the events now, and an event asks for the state: a hidden tab waits to be
// looked at (and polls every 5 s), so that six tabs do not send six requests at each event
// and Stop never queues behind them.
let hiddenTicks = 0;
function refreshIfSeen() { if (!document.hidden) refresh(); }
document.addEventListener("visibilitychange", refreshIfSeen);
listen(); refresh(); setInterval(() => { if (!document.hidden || ++hiddenTicks % 5 === 0) refresh(); }, 1000);
// The worklist at the start and every five minutes (and on the button): a C-FIND each time.
loadWorklist(false); setInterval(() => loadWorklist(true), 300000);
</script>
</body>
</html>
"""#
}
