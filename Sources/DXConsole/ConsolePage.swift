/// The console's one page: HTML, style and script together, served by the binary (no file on
/// disk, nothing from any other server). Everything it shows comes from `/api/state` (every
/// second) and `/api/events` (as it happens); everything it does goes through `/api/call`,
/// i.e. one dexad method with the user's own rights, and the Stop button through `/api/stop`.
enum ConsolePage {
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
    <h2>Today</h2>
    <ul class="exams" id="exams"></ul>
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
    <form id="reason-form" hidden>
      <h2 id="reason-title"></h2>
      <div id="reason-site-row"><label for="reason-site">Site</label><select id="reason-site"></select></div>
      <label for="reason-text">Reason (on the record and the report)</label><input id="reason-text" maxlength="500" required>
      <div class="actions"><button type="submit" id="reason-ok">Confirm</button><button type="button" id="reason-cancel">Cancel</button></div>
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
  if (r.error) { text($("error"), method + ": " + (r.error.message || r.error)); throw new Error(r.error.message || r.error); }
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
    const choose = () => { if (selected !== ex.id) $("results").replaceChildren(); selected = ex.id; render(); };
    li.addEventListener("click", choose);
    li.addEventListener("keydown", e => { if (e.key === "Enter") choose(); });
    ul.append(li);
  }
  renderDetail();
}
const siteNames = { ap_spine: "AP spine", left_hip: "left hip", right_hip: "right hip", lateral_spine: "lateral spine (VFA)" };
const site = s => siteNames[s] || s;
function exam() { return (Array.isArray(state.exams) ? state.exams : []).find(e => e.id === selected); }
function renderDetail() {
  const ex = exam();
  renderImageBox();
  $("checklist").hidden = !ex || !["created", "blocked", "ready"].includes(ex.state);
  const actions = $("exam-actions"); actions.replaceChildren();
  if (!ex) { text($("detail-title"), "No exam selected"); return; }
  text($("detail-title"), (ex.patient && ex.patient.name) + " — " + ex.state.replace("_", " ") + " — plan: " + (ex.plan || []).map(site).join(", "));
  const button = (label, fn, enabled = true) => { const b = document.createElement("button"); b.textContent = label; b.disabled = !enabled || !connected; b.addEventListener("click", fn); actions.append(b); };
  const running = ex.state === "in_progress" && (ex.attempts || []).some(a => a.status === "running");
  button("Start", () => call("exam.start", { exam_id: ex.id }).then(refresh, refresh), ex.state === "ready");
  button("Next site", () => call("exam.next", { exam_id: ex.id }).then(refresh, refresh), ex.state === "in_progress" && !running);
  button("Repeat", () => call("exam.repeat", { exam_id: ex.id }).then(refresh, refresh), ex.state === "in_progress" && !running);
  button("Skip site…", () => askReason("skip", ex), ex.state === "in_progress" && !running);
  button("Results", () => call("exam.results", { exam_id: ex.id }).then(showResults), ["in_progress", "completed"].includes(ex.state));
  // Not while a scan runs: Stop is the way then (a prompt would hold the page, and Stop, while open).
  button("Abort exam…", () => askReason("abort", ex), ["ready", "in_progress", "blocked", "created"].includes(ex.state) && !running);
  const p = progress[ex.id];
  $("scan").hidden = !running || !p;
  if (running && p) {
    text($("scan-site"), "Scanning " + site(p.site) + " — keep the patient still");
    $("scan-progress").max = p.planned_lines || 1; $("scan-progress").value = p.lines || 0;
    text($("scan-text"), p.lines + " of " + p.planned_lines + " lines" + (p.eta_s !== undefined ? ", " + Math.round(p.eta_s) + " s left" : "") + (p.gaps ? ", " + p.gaps + " gaps" : ""));
  }
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
  text($("reason-title"), kind === "skip" ? "Skip a site of " + (ex.patient && ex.patient.name) : "Abort the exam of " + (ex.patient && ex.patient.name));
  $("reason-site-row").hidden = kind !== "skip";
  const sel = $("reason-site"); sel.replaceChildren();
  const done = new Set((ex.attempts || []).filter(a => a.status === "completed" || a.status === "skipped").map(a => a.site));
  for (const s of (ex.plan || []).filter(s => !done.has(s))) { const o = document.createElement("option"); o.value = s; o.textContent = site(s); sel.append(o); }
  $("reason-text").value = "";
  $("reason-form").hidden = false;
  $("reason-text").focus();
}
$("reason-cancel").addEventListener("click", () => { asking = null; $("reason-form").hidden = true; });
$("reason-form").addEventListener("submit", e => {
  e.preventDefault();
  if (!asking) return;
  const reason = $("reason-text").value.trim();
  if (!reason) return;
  const done = () => { asking = null; $("reason-form").hidden = true; refresh(); };
  if (asking.kind === "skip") call("exam.skip", { exam_id: asking.exam, site: $("reason-site").value, reason }).then(done, refresh);
  else call("exam.abort", { exam_id: asking.exam, reason }).then(done, refresh);
});
function showResults(r) {
  const div = $("results"); div.replaceChildren();
  const h = document.createElement("h2");
  h.textContent = "Results" + (r.diagnosis && r.diagnosis.words ? ": " + r.diagnosis.words : "");
  div.append(h);
  const report = document.createElement("button");
  report.textContent = "Report (PDF)";
  report.addEventListener("click", () => window.open("/api/report?exam=" + encodeURIComponent(r.exam_id) + "&token=" + encodeURIComponent(token), "_blank", "noopener"));
  div.append(report);
  const t = document.createElement("table");
  const head = document.createElement("tr");
  for (const c of ["site", "region", "BMD g/cm²", "T", "Z", ""]) { const th = document.createElement("th"); th.textContent = c; head.append(th); }
  t.append(head);
  const fixed = (v, n) => v === null || v === undefined ? "—" : Number(v).toFixed(n);
  for (const s of (r.sites || [])) {
    const rois = (s.result && s.result.rois) || [];
    if (!rois.length) {
      const tr = document.createElement("tr");
      for (const v of [s.title || site(s.site), s.note || s.status.replace("_", " "), "", "", "", ""]) { const td = document.createElement("td"); td.textContent = v; tr.append(td); }
      t.append(tr);
    }
    for (const roi of rois) {
      const tr = document.createElement("tr");
      const why = roi.excluded ? "excluded" + (roi.reason ? ": " + roi.reason : "") : roi.complete === false ? "incomplete" : "";
      for (const v of [s.title || site(s.site), roi.name, fixed(roi.bmd_g_cm2, 3), fixed(roi.t_score, 1), fixed(roi.z_score, 1), why]) {
        const td = document.createElement("td"); td.textContent = v; tr.append(td);
      }
      t.append(tr);
    }
  }
  div.append(t);
  const images = document.createElement("div");
  images.style.display = "flex"; images.style.flexWrap = "wrap"; images.style.gap = "12px"; images.style.marginTop = "12px";
  for (const s of (r.sites || []).filter(s => s.result)) {
    const fig = document.createElement("figure"); fig.style.margin = "0";
    const img = document.createElement("img");
    img.alt = (s.title || site(s.site)) + " with its analysis";
    img.style.height = "320px"; img.style.background = "#000";
    img.src = "/api/site-image?exam=" + encodeURIComponent(r.exam_id) + "&site=" + encodeURIComponent(s.site) + "&token=" + encodeURIComponent(token);
    const cap = document.createElement("figcaption"); cap.textContent = s.title || site(s.site);
    fig.append(img, cap); images.append(fig);
  }
  div.append(images);
}
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
                        referral: $("preferral").value.trim() }).then(ex => { selected = ex.id; $("new-exam").reset(); refresh(); }, () => {});
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
function listen() {
  const es = new EventSource("/api/events?token=" + encodeURIComponent(token));
  es.addEventListener("daemon", e => { const d = JSON.parse(e.data); log(d.connected ? "dexad connected" : "dexad disconnected"); refresh(); });
  es.addEventListener("scan.progress", e => { const p = JSON.parse(e.data); if (p.exam_id !== undefined) progress[p.exam_id] = p; renderDetail(); });
  es.addEventListener("scan.image", e => drawRows(JSON.parse(e.data)));
  es.addEventListener("exam.step", e => {
    const s = JSON.parse(e.data);
    log("exam " + s.exam_id + ": " + site(s.site) + " " + s.phase.replace("_", " "));
    // A new attempt: its progress and image start afresh.
    if (s.phase === "positioning") { delete progress[s.exam_id]; if (image && image.exam === s.exam_id) { image = null; $("image-box").hidden = true; } }
    refresh();
  });
  es.addEventListener("call.result", e => {
    const c = JSON.parse(e.data);
    if (c.error) { text($("error"), c.method + ": " + (c.error.message || JSON.stringify(c.error))); log(c.method + " failed: " + (c.error.message || "")); }
    else log(c.method + ": " + ((c.result && c.result.message) || "done"));
    refresh();
  });
  es.addEventListener("exam.warning", e => { const w = JSON.parse(e.data); log("WARNING " + (w.site ? site(w.site) + ": " : "") + w.message); });
  es.addEventListener("event", e => {
    const ev = JSON.parse(e.data);
    const words = { state: () => "device " + (ev.old || "?") + " → " + (ev.new || "?"), scan_started: () => "scan " + ev.scan_id + " started",
                    scan_complete: () => "scan " + ev.scan_id + " complete, " + ev.lines + " lines", scan_aborted: () => "scan " + ev.scan_id + " aborted (" + ev.reason + ")",
                    interlocks: () => "interlocks " + ((ev.interlocks_open || []).length ? "open: " + ev.interlocks_open.join(", ") : "closed"),
                    fault: () => "FAULT " + (ev.fault || ev.code) + ": " + (ev.message || ""), link_lost: () => "device link lost: " + (ev.reason || ""),
                    connected: () => "device " + (ev.serial || "") + " connected" };
    log(words[ev.type] ? words[ev.type]() : "device: " + ev.type);
    refresh();
  });
  // A stream refused (too many pages open) or lost for good: the page says so and keeps polling.
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) {
      text($("error"), "Live events are off on this page (too many console pages open, or the console restarted): close the others; the state still updates every second.");
      setTimeout(listen, 10000);
    }
    refresh();
  };
}
listen(); refresh(); setInterval(refresh, 1000);
</script>
</body>
</html>
"""#
}
