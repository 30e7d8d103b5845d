// derrumbe's page: upload a plate, box or paint the building, preview, render, download.
// Plain DOM and fetch: no framework, no build step, nothing from a CDN.
"use strict";

const $ = (id) => document.getElementById(id);
// Every element is built here, and every piece of text the server sends (job errors,
// labels, file names) goes in as text, never as HTML: nothing it says can become markup.
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") Object.assign(el.style, v);
    else el[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) el.append(c);  // strings become text nodes
  return el;
}
const state = { plate: null, img: null, tool: "box", box: null, painting: false, selected: null, streams: {} };
let masks = {};               // building / holdout: offscreen canvases at the plate's size

async function api(path, opts = {}) {
  const r = await fetch(path, opts);
  const text = await r.text();
  let body = null;
  try { body = JSON.parse(text); } catch { body = text; }
  if (!r.ok) throw new Error((body && body.detail) || `${r.status}`);
  return body;
}
function status(msg, bad) { $("status").textContent = msg || ""; $("status").style.color = bad ? "#e06a5a" : ""; }

// ---- controls from the spec's field table ----------------------------------------------
async function buildControls() {
  const f = await api("/api/fields");
  const form = $("controls");
  for (const [group, fields] of Object.entries(f.groups)) {
    const g = document.createElement("div");
    g.className = "group";
    g.append(h("h3", {}, group));
    for (const fd of fields) {
      const row = document.createElement("div");
      row.className = "field";
      row.title = fd.help + (fd.lo !== null ? ` (${fd.lo}..${fd.hi}${fd.unit ? " " + fd.unit : ""})` : "");
      let input;
      if (fd.choices) {
        input = document.createElement("select");
        for (const c of fd.choices) input.add(new Option(c, c, c === fd.default, c === fd.default));
      } else {
        input = document.createElement("input");
        if (typeof fd.default === "number" || fd.lo !== null) {
          input.type = "number";
          input.step = Number.isInteger(fd.default) && !["start", "duration", "dust", "height_m", "shake", "grain"].includes(fd.name) ? "1" : "any";
          if (fd.lo !== null) { input.min = fd.lo; input.max = fd.hi; }
        }
        input.placeholder = fd.default === null ? (fd.name === "wind" ? "1,90" : "auto") : String(fd.default);
      }
      input.id = "f_" + fd.name;
      input.name = fd.name;
      row.append(h("label", { htmlFor: "f_" + fd.name }, fd.name.replace("_m", "").replace("_", " "),
        fd.unit ? " " : null, fd.unit ? h("span", { className: "unit" }, fd.unit) : null));
      row.appendChild(input);
      g.appendChild(row);
    }
    form.appendChild(g);
  }
  for (const p of f.wedge_params) $("wparam").add(new Option(p, p));
}

function specFromControls() {
  const spec = {};
  for (const el of $("controls").elements) {
    if (!el.name || el.value === "") continue;
    spec[el.name] = el.type === "number" ? Number(el.value) : el.value;
  }
  return spec;
}

// ---- plate upload ------------------------------------------------------------------------
async function upload(file) {
  status(`uploading ${file.name}…`);
  try {
    const meta = await api("/api/plates", { method: "POST", body: file,
      headers: { "Content-Type": "application/octet-stream" } });
    state.plate = meta;
    const img = new Image();
    img.onload = () => { state.img = img; setupCanvas(); };
    img.src = `/api/plates/${encodeURIComponent(meta.id)}/first.png`;
    $("plateinfo").textContent = `${meta.width}×${meta.height}` +
      (meta.kind === "video" ? ` · ${meta.frames} frames at ${Math.round(meta.fps * 100) / 100} fps` : "");
    status("drag a box around the building");
  } catch (e) { status(e.message, true); }
}

function setupCanvas() {
  const c = $("canvas"), p = state.plate;
  c.width = p.width; c.height = p.height;
  masks = {};
  for (const k of ["building", "holdout"]) {
    const m = document.createElement("canvas");
    m.width = p.width; m.height = p.height;
    masks[k] = m;
  }
  state.box = null;
  state.autoShown = false;
  $("drop").hidden = true;
  $("viewer").hidden = false;
  fit();
  draw();
  updateButtons();
}

// The plate as large as the stage allows, whole: width-bound or height-bound.
function fit() {
  const c = $("canvas"), p = state.plate;
  if (!p) return;
  const wrap = $("stage").getBoundingClientRect();
  const room = Math.max(200, window.innerHeight - 150);
  const s = Math.min((wrap.width - 28) / p.width, room / p.height);
  for (const el of [c, $("video")]) {
    el.style.width = `${Math.round(p.width * s)}px`;
    el.style.height = `${Math.round(p.height * s)}px`;
  }
}
window.addEventListener("resize", fit);

function draw() {
  const c = $("canvas"), ctx = c.getContext("2d");
  if (!state.img) return;
  ctx.drawImage(state.img, 0, 0);
  ctx.globalAlpha = 0.45;
  for (const [k, col] of [["building", "#e0a04a"], ["holdout", "#4aa3e0"]]) {
    const t = document.createElement("canvas");
    t.width = c.width; t.height = c.height;
    const tc = t.getContext("2d");
    tc.drawImage(masks[k], 0, 0);
    tc.globalCompositeOperation = "source-in";
    tc.fillStyle = col; tc.fillRect(0, 0, t.width, t.height);
    ctx.drawImage(t, 0, 0);
  }
  ctx.globalAlpha = 1;
  if (state.box) {
    const [x0, y0, x1, y1] = state.box;
    ctx.lineWidth = Math.max(2, c.width / 400);
    ctx.strokeStyle = "#e0a04a";
    ctx.setLineDash([ctx.lineWidth * 4, ctx.lineWidth * 3]);
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.setLineDash([]);
  }
}

function toPlate(ev) {
  const c = $("canvas"), r = c.getBoundingClientRect();
  return [(ev.clientX - r.left) * c.width / r.width, (ev.clientY - r.top) * c.height / r.height];
}
function paint(ev) {
  const [x, y] = toPlate(ev);
  const r = Number($("brush").value) * state.plate.width / 1000;
  const erase = state.tool === "erase";
  for (const k of erase ? ["building", "holdout"] : [state.tool]) {
    const mc = masks[k].getContext("2d");
    mc.globalCompositeOperation = erase ? "destination-out" : "source-over";
    mc.fillStyle = "#fff";
    mc.beginPath(); mc.arc(x, y, r, 0, Math.PI * 2); mc.fill();
  }
  draw();
}
function hasPaint(k) {
  const d = masks[k].getContext("2d").getImageData(0, 0, masks[k].width, masks[k].height).data;
  for (let i = 3; i < d.length; i += 64) if (d[i] > 128) return true;
  return false;
}
function maskPNG(k) {
  // White where painted, black elsewhere: what derrumbe's --mask reads.
  const t = document.createElement("canvas");
  t.width = masks[k].width; t.height = masks[k].height;
  const tc = t.getContext("2d");
  tc.fillStyle = "#000"; tc.fillRect(0, 0, t.width, t.height);
  tc.drawImage(masks[k], 0, 0);
  return t.toDataURL("image/png");
}

function bindCanvas() {
  const c = $("canvas");
  let start = null;
  c.addEventListener("pointerdown", (ev) => {
    c.setPointerCapture(ev.pointerId);
    if (state.tool === "box") { start = toPlate(ev); state.box = null; }
    else { state.painting = true; paint(ev); }
  });
  c.addEventListener("pointermove", (ev) => {
    if (start) {
      const [x, y] = toPlate(ev);
      state.box = [Math.round(Math.min(start[0], x)), Math.round(Math.min(start[1], y)),
                   Math.round(Math.max(start[0], x)), Math.round(Math.max(start[1], y))];
      draw();
    } else if (state.painting) paint(ev);
  });
  c.addEventListener("pointerup", () => {
    if (start && state.box && (state.box[2] - state.box[0] < 4 || state.box[3] - state.box[1] < 4)) state.box = null;
    start = null; state.painting = false;
    updateButtons(); draw();
  });
  for (const b of document.querySelectorAll(".tool")) {
    b.addEventListener("click", () => {
      state.tool = b.dataset.tool;
      for (const o of document.querySelectorAll(".tool")) o.classList.toggle("on", o === b);
    });
  }
  $("clear").addEventListener("click", () => {
    state.box = null;
    for (const m of Object.values(masks)) m.getContext("2d").clearRect(0, 0, m.width, m.height);
    draw(); updateButtons();
  });
}

function updateButtons() {
  const ready = state.plate && (state.box || (masks.building && hasPaint("building")));
  for (const id of ["preview", "render", "wedge"]) $(id).disabled = !ready;
}

function jobBody(kind) {
  const body = { plate: state.plate.id, kind, spec: specFromControls() };
  if (masks.building && hasPaint("building")) body.mask = maskPNG("building");
  else body.box = state.box;
  if (hasPaint("holdout")) body.holdout = maskPNG("holdout");
  // Found holdouts were painted in and edited: the paint is the artist's word now.
  if (state.autoShown) body.spec.no_auto_holdouts = true;
  for (const k of ["exr", "usd", "prores", "burn_in"]) body[k] = $(k).checked;
  return body;
}

async function submit(kind) {
  try {
    const j = await api("/api/jobs", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(jobBody(kind)) });
    state.selected = j.id;
    status(`${kind} queued`);
    refreshJobs();
  } catch (e) { status(e.message, true); }
}

async function wedge() {
  const values = $("wvalues").value.split(",").map((s) => s.trim()).filter(Boolean)
    .map((v) => (isNaN(Number(v)) ? v : Number(v)));
  try {
    const w = await api("/api/wedges", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...jobBody("preview"), param: $("wparam").value, values }) });
    const div = h("div", { className: "wedge", id: "w_" + w.wedge },
      h("div", { className: "dim" }, `${w.param}: ${values.join(", ")} — rendering…`));
    $("wedges").prepend(div);
    watchWedge(w.wedge);
    refreshJobs();
  } catch (e) { status(e.message, true); }
}
async function watchWedge(id) {
  const w = await api(`/api/wedges/${encodeURIComponent(id)}`);
  if (w.jobs.some((j) => j.state === "queued" || j.state === "running")) { setTimeout(() => watchWedge(id), 1500); return; }
  const div = $("w_" + id);
  div.replaceChildren(h("img", { src: `/api/wedges/${encodeURIComponent(id)}/sheet.png`, alt: "wedge contact sheet" }));
  for (const j of w.jobs) {
    if (j.state !== "done") continue;
    const b = h("button", {}, `render ${j.label}`);
    b.addEventListener("click", async () => {
      const body = { exr: $("exr").checked, usd: $("usd").checked, prores: $("prores").checked, burn_in: $("burn_in").checked };
      try {
        await api(`/api/jobs/${encodeURIComponent(j.id)}/promote`, { method: "POST",
          headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      } catch (e) { status(e.message, true); }
      refreshJobs();
    });
    div.append(b, " ");
  }
}

// ---- jobs, live progress, player ---------------------------------------------------------
function fmt(s) { s = Math.max(0, Math.round(s)); return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`; }
function progressText(j) {
  const p = j.progress || {};
  if (j.state === "queued") return "queued";
  if (j.state === "done") return `done in ${fmt((j.finished || 0) - (j.started || 0))}`;
  if (j.state === "failed") return "failed: " + (j.error || "");
  if (j.state === "cancelled") return "cancelled";
  let eta = "";
  if (p.done > 0 && p.total > 1 && p.stage_elapsed) eta = `, ~${fmt(p.stage_elapsed / p.done * (p.total - p.done))} left in ${p.stage}`;
  // On a cluster (derrumbe serve --scheduler): how many frame chunks the workers have finished.
  const ch = p.chunks ? Object.values(p.chunks) : [];
  const chunks = ch.length ? ` · chunks ${ch.filter((c) => c.startsWith("done")).length}/${ch.length}` : "";
  return `${p.stage || "starting"} ${p.done || 0}/${p.total || 1}${chunks} · ${fmt(p.elapsed || 0)} elapsed${eta}`;
}
function fraction(j) {
  if (j.state === "done") return 1;
  const p = j.progress || {};
  const order = ["plate", "matte", "camera", "fracture", "simulate", "particles", "dust", "cleanplate", "render"];
  const k = Math.max(0, order.indexOf(p.stage));
  const within = p.total ? p.done / p.total : 0;
  const w = [0, 0.01, 0.01, 0.02, 0.25, 0.01, 0.2, 0.01, 0.49];
  return w.slice(0, k).reduce((a, b) => a + b, 0) + w[k] * within;
}

function renderJob(li, j) {
  li.className = `state-${j.state}` + (state.selected === j.id ? " sel" : "");
  const what = j.label ? `${j.kind} · ${j.label}` : j.kind;
  li.replaceChildren(
    h("div", { className: "jobline" }, h("span", {}, what), h("span", { className: "dim" }, j.id)),
    h("div", { className: "dim" }, progressText(j)),
    h("div", { className: "bar" }, h("i", { style: { width: `${Math.round(fraction(j) * 100)}%` } })));
  if (j.state === "running" || j.state === "queued") {
    const cb = h("button", {}, "Cancel");
    cb.addEventListener("click", async (ev) => {
      ev.stopPropagation();
      try { await api(`/api/jobs/${encodeURIComponent(j.id)}/cancel`, { method: "POST" }); } catch (e) { status(e.message, true); }
    });
    li.append(cb);
  }
  li.onclick = () => { state.selected = j.id; for (const o of $("jobs").children) o.classList.remove("sel"); li.classList.add("sel"); show(j); };
}

function watch(j, li) {
  if (state.streams[j.id] || j.state === "done" || j.state === "failed" || j.state === "cancelled") return;
  const es = new EventSource(`/api/jobs/${encodeURIComponent(j.id)}/events`);
  state.streams[j.id] = es;
  es.onmessage = (ev) => {
    const nj = JSON.parse(ev.data);
    renderJob(li, nj);
    if (["done", "failed", "cancelled"].includes(nj.state)) {
      es.close(); delete state.streams[j.id];
      if (state.selected === nj.id) status(`${nj.kind} ${nj.state}` + (nj.error ? `: ${nj.error}` : ""), nj.state === "failed");
      if (nj.state === "done" && state.selected === nj.id) show(nj);
    }
  };
  es.onerror = () => { es.close(); delete state.streams[j.id]; setTimeout(refreshJobs, 2000); };
}

async function refreshJobs() {
  const jobs = await api("/api/jobs");
  const ul = $("jobs");
  ul.replaceChildren();
  for (const j of jobs) {
    const li = document.createElement("li");
    li.id = "job_" + j.id;
    renderJob(li, j);
    ul.appendChild(li);
    watch(j, li);
  }
}

async function show(j) {
  if (j.state !== "done") return;
  const m = await api(`/api/jobs/${encodeURIComponent(j.id)}/files/manifest.json`);
  const base = `/api/jobs/${encodeURIComponent(j.id)}`;
  const file = (rel) => `${base}/files/${rel.split("/").map(encodeURIComponent).join("/")}`;
  $("player").hidden = false;
  $("platewrap").hidden = true;          // the result where the plate was, as large
  fit();
  const v = $("video");
  v.src = file(m.movie);
  v.play().catch(() => {});
  const links = [[file(m.movie), "movie"], [`${base}/zip/frames`, "frames (zip)"],
                 [`${base}/files/manifest.json`, "manifest"]];
  if (m.exr) links.push([`${base}/zip/exr`, "EXR (zip)"]);
  if (m.usd) links.push([file(m.usd.file), "USD"]);
  for (const mv of (m.movies || []).slice(1)) links.push([file(mv), mv.split(".").pop().toUpperCase()]);
  $("downloads").replaceChildren(...links.map(([href, t]) => h("a", { href, download: "", dataset: { dl: t } }, t)));
}

// ---- wiring ------------------------------------------------------------------------------
window.addEventListener("DOMContentLoaded", async () => {
  await buildControls();
  bindCanvas();
  const drop = $("drop");
  $("file").addEventListener("change", (e) => e.target.files[0] && upload(e.target.files[0]));
  for (const t of ["dragenter", "dragover"]) drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const t of ["dragleave", "drop"]) drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  drop.addEventListener("drop", (e) => e.dataTransfer.files[0] && upload(e.dataTransfer.files[0]));
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => { e.preventDefault(); if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]); });
  $("preview").addEventListener("click", () => submit("preview"));
  $("render").addEventListener("click", () => submit("final"));
  $("wedge").addEventListener("click", wedge);
  $("back").addEventListener("click", () => { $("player").hidden = true; $("platewrap").hidden = false; $("video").pause(); fit(); });
  refreshJobs();
});

// The automatic holdouts of the boxed plate, shown as holdout paint to erase or add to.
async function findHoldouts() {
  if (!state.plate || !state.box) { status("drag a box around the building first", true); return; }
  status("finding holdouts…");
  try {
    const r = await api(`/api/plates/${state.plate.id}/holdouts`, { method: "POST",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ box: state.box }) });
    const img = new Image();
    img.onload = () => {
      const m = masks.holdout, g = m.getContext("2d");
      const t = document.createElement("canvas");
      t.width = m.width; t.height = m.height;
      const tg = t.getContext("2d");
      tg.drawImage(img, 0, 0, m.width, m.height);
      const d = tg.getImageData(0, 0, m.width, m.height);
      for (let i = 0; i < d.data.length; i += 4) { d.data[i + 3] = d.data[i]; d.data[i] = d.data[i + 1] = d.data[i + 2] = 255; }
      tg.putImageData(d, 0, 0);
      g.drawImage(t, 0, 0);
      state.autoShown = true;
      draw();
      const kinds = r.objects.map((o) => o.kind);
      status(kinds.length ? `${kinds.length} holdouts: ${kinds.join(", ")} (erase or paint to change)` : "no holdouts found");
    };
    img.src = r.matte;
  } catch (e) { status(e.message, true); }
}
$("auto-holdouts").addEventListener("click", findHoldouts);