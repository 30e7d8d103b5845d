// derrumbe's page: upload a plate, box or paint the building, see what the render will
// assume, preview, render, download; every shot stays in the history and reopens.
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
const state = {
  plate: null, img: null, tool: "box", box: null, painting: false, selected: null, streams: {},
  job: null,            // the job open in the viewer (its HUD, its player)
  est: null,            // the estimates of the current plate and box
  estImgs: {},          // decoded matte / holdout images of the estimates
  edited: {},           // estimate fields the artist changed
  materialTouched: false, autoShown: false, manifest: null, fields: null,
};
let masks = {};               // building / holdout: offscreen canvases at the plate's size
const DONE = ["done", "failed", "cancelled"];

async function api(path, opts = {}) {
  const r = await fetch(path, opts);
  const text = await r.text();
  let body = null;
  try { body = JSON.parse(text); } catch { body = text; }
  if (!r.ok) {
    const e = new Error((body && body.detail) || `${r.status}`);
    e.field = body && body.field;
    throw e;
  }
  return body;
}
const post = (path, body) => api(path, { method: "POST", headers: { "Content-Type": "application/json" },
  body: JSON.stringify(body) });
function status(msg, bad) { $("status").textContent = msg || ""; $("status").classList.toggle("bad", !!bad); }
// A message that names a CLI flag, as the page words it: "--wind needs …" -> "Wind: needs …".
function pageWords(msg) {
  const m = /^--([a-z-]+):?\s*(.*)$/.exec(msg);
  if (!m) return msg;
  const name = m[1].replace(/-/g, "_");
  const fd = state.fields && Object.values(state.fields.groups).flat().find((f) => f.name === name);
  return `${fd ? fd.label : m[1]}: ${m[2]}`;
}

// ---- controls from the spec's field table ----------------------------------------------
const EST_ROWS = [  // the estimates panel: [id, label, unit, spec field or null (derived)]
  ["storeys", "Storeys", "", null], ["height_m", "Height", "m", "height_m"], ["distance", "Distance", "m", null],
  ["focal_mm", "Lens", "mm", "focal_mm"], ["horizon_y", "Horizon", "px", "horizon_y"],
  ["sun_azimuth", "Sun azimuth", "°", "sun_azimuth"], ["sun_elevation", "Sun elevation", "°", "sun_elevation"],
];
function rangeText(fd) {
  if (fd.lo === null || fd.lo === undefined) return "";
  const u = fd.unit ? " " + fd.unit : "";
  return `${fd.lo}–${fd.hi}${u}`;
}
function fieldRow(fd, id) {
  let input;
  if (fd.choices) {
    input = h("select");
    for (const c of fd.choices) input.add(new Option(c, c, c === fd.default, c === fd.default));
  } else {
    input = h("input");
    if (typeof fd.default === "number" || (fd.lo !== null && fd.lo !== undefined)) {
      input.type = "number";
      input.step = Number.isInteger(fd.default) && !["start", "duration", "dust", "height_m", "shake", "grain"]
        .includes(fd.name) ? "1" : "any";
      if (fd.lo !== null && fd.lo !== undefined) { input.min = fd.lo; input.max = fd.hi; }
    }
    input.placeholder = fd.placeholder || (fd.default === null ? "" : String(fd.default));
  }
  input.id = id;
  input.name = fd.name;
  const label = h("label", { htmlFor: id }, fd.label);
  const unit = h("span", { className: "unit" }, fd.unit || "");
  const row = h("div", { className: "field", title: fd.help, dataset: { field: fd.name } }, label,
    h("div", { className: "inputs" }, input, unit));
  const rng = fd.name === "seed" ? "any whole number: same seed, same shot" : rangeText(fd);
  if (rng) row.append(h("div", { className: "hint" }, rng));
  input.addEventListener("input", () => clearError(fd.name));
  return row;
}

async function buildControls() {
  const f = await api("/api/fields");
  state.fields = f;
  const form = $("controls");
  for (const [group, fields] of Object.entries(f.groups)) {
    if (group === "Camera and scale") { buildEstimates(fields); continue; }
    const g = h("div", { className: "group" }, h("h3", {}, group));
    for (const fd of fields) g.append(fieldRow(fd, "f_" + fd.name));
    form.append(g);
  }
  $("f_material").addEventListener("change", () => { state.materialTouched = true; materialNote(); });
  // Version up, as in Nuke: the next render sits beside this one instead of replacing it.
  const vup = h("button", { type: "button", className: "ghost reset", title: "version up: the next render is a new "
    + "version beside the earlier ones" }, "+1");
  vup.addEventListener("click", () => { $("f_version").value = String((Number($("f_version").value) || 1) + 1); saveDraft(); });
  $("f_version").parentElement.append(vup);
  for (const id of ["f_start", "f_fps", "f_frames"]) $(id).addEventListener("input", startFrame);
  startFrame();
  for (const p of f.wedge_params) $("wparam").add(new Option(p.label + (p.unit ? ` (${p.unit})` : ""), p.name));
}

function buildEstimates(fields) {
  const byName = Object.fromEntries(fields.map((fd) => [fd.name, fd]));
  const box = $("est-fields");
  for (const [id, label, unit, field] of EST_ROWS) {
    const fd = field ? byName[field] : { name: id, label, unit, lo: null, hi: null, default: null, help: "" };
    const row = fieldRow({ ...fd, label, unit, placeholder: "—",
      help: id === "storeys" ? "storeys from the street to the roofline: sets the height"
        : id === "distance" ? "camera to the facade: sets the height (with the lens)" : fd.help }, "e_" + id);
    row.classList.add("est");
    const input = row.querySelector("input");
    input.step = "any";
    const reset = h("button", { className: "ghost reset", type: "button", title: "back to the estimate",
      hidden: true }, "↺");
    reset.addEventListener("click", () => { delete state.edited[editKey(id)]; showEstimates(); });
    row.querySelector(".inputs").append(reset);
    input.addEventListener("input", () => estimateEdited(id, input.value));
    box.append(row);
  }
}
const editKey = (id) => (["storeys", "distance", "height_m"].includes(id) ? "height_m" : id);

// Storeys, height and distance are one number seen three ways: the height the render
// uses. Editing one sets the height; the other two follow.
function estimateEdited(id, raw) {
  const e = state.est;
  const v = Number(raw);
  if (!e || raw === "" || !isFinite(v)) return;
  let height = null;
  if (id === "storeys") height = v * e.storey_m + (e.ground_floor_m - e.storey_m);
  else if (id === "height_m") height = v;
  else if (id === "distance") height = v * (e.building_rows[1] - e.building_rows[0]) / (focal() * e.f_px_per_mm);
  if (height !== null) state.edited.height_m = Math.round(height * 10) / 10;
  else state.edited[id] = v;
  showEstimates(id);
  draw();
}
function focal() { return state.edited.focal_mm ?? state.est.focal_mm; }
function heightNow() { return state.edited.height_m ?? state.est.height_m; }

function showEstimates(typing) {
  const e = state.est;
  const rows = $("est-fields").querySelectorAll(".field");
  if (!e) { for (const r of rows) r.querySelector("input").value = ""; return; }
  const H = heightNow();
  const hpx = e.building_rows[1] - e.building_rows[0];
  const vals = {
    storeys: (H - (e.ground_floor_m - e.storey_m)) / e.storey_m, height_m: H,
    distance: focal() * e.f_px_per_mm * H / hpx, focal_mm: focal(),
    horizon_y: state.edited.horizon_y ?? e.horizon_y, sun_azimuth: state.edited.sun_azimuth ?? e.sun_azimuth,
    sun_elevation: state.edited.sun_elevation ?? e.sun_elevation,
  };
  for (const r of rows) {
    const id = r.querySelector("input").id.slice(2);
    const input = r.querySelector("input");
    const edited = editKey(id) in state.edited;
    if (id !== typing) input.value = String(Math.round(vals[id] * 10) / 10);
    r.classList.toggle("estimated", !edited);
    r.querySelector(".reset").hidden = !edited;
    let hint = r.querySelector(".hint");
    if (!hint) { hint = h("div", { className: "hint" }); r.append(hint); }
    hint.textContent = estHint(id, e, edited);
  }
}
function estHint(id, e, edited) {
  if (edited) return "yours (↺ for the estimate)";
  if (id === "height_m") return e.height_given ? "given" : `likely ${e.height_range_m[0]}–${e.height_range_m[1]} m · ${e.height_source}`;
  if (id === "storeys") return `storeys of ${e.storey_m} m, the ground floor ${e.ground_floor_m} m`;
  if (id === "distance") return "from the height and the lens";
  if (id === "focal_mm") return e.focal_given ? "given" : "35 mm equivalent; assumed (a phone's main camera)";
  if (id === "horizon_y") return `row from the top, of ${e.plate_size[1]}; estimated (eye height 1.6 m)`;
  if (id === "sun_azimuth") return "estimated from the facade's shading; 0 behind the camera, 90 from the right";
  if (id === "sun_elevation") return "assumed";
  return "";
}

// The start in seconds, and the frame it falls on: artists count frames.
function startFrame() {
  const row = document.querySelector('#controls [data-field="start"]');
  const fps = Number($("f_fps").value) || (state.plate && state.plate.fps) || 24;
  const m = /^\s*(\d+)\s*-/.exec($("f_frames").value);
  const first = m ? Number(m[1]) : 1001;
  const t = $("f_start").value === "" ? 0.5 : Number($("f_start").value);
  const hint = row.querySelector(".hint");
  if (hint && isFinite(t)) hint.textContent = `0–600 s · frame ${first + Math.round(t * fps)} at ${Math.round(fps * 100) / 100} fps`;
}

function specFromControls() {
  const spec = {};
  for (const el of $("controls").elements) {
    if (!el.name || el.value === "") continue;
    spec[el.name] = el.type === "number" ? Number(el.value) : el.value;
  }
  for (const k of ["height_m", "focal_mm", "horizon_y", "sun_azimuth", "sun_elevation"]) {
    if (k in state.edited) spec[k] = state.edited[k];
  }
  return spec;
}

// ---- errors beside the field they are about ----------------------------------------------
function clearError(field) {
  for (const r of document.querySelectorAll(field ? `[data-field="${field}"]` : ".field.bad")) {
    r.classList.remove("bad");
    const e = r.querySelector(".err");
    if (e) e.remove();
  }
  if (!field || field === "box") { $("box-err").hidden = true; $("canvas").classList.remove("bad"); }
}
function showError(e) {
  const f = e.field;
  const msg = String(e.message);
  status(pageWords(msg), true);
  if (!f) return;
  if (f === "box" || f === "mask") {
    $("box-err").textContent = msg; $("box-err").hidden = false; $("canvas").classList.add("bad");
    return;
  }
  const row = document.querySelector(`#controls [data-field="${f}"], #est-fields [data-field="${f}"]`);
  if (!row) return;
  clearError(f);
  row.classList.add("bad");
  // The CLI's flag is the field's own label here.
  row.append(h("div", { className: "err", role: "alert" }, msg.replace(/^--[a-z-]+:?\s*/, "")));
  row.scrollIntoView({ block: "nearest" });
  const input = row.querySelector("input, select");
  if (input) input.focus();
}

// ---- plate upload and opening --------------------------------------------------------------
async function upload(file) {
  status(`uploading ${file.name}…`);
  try {
    const meta = await api("/api/plates", { method: "POST", body: file,
      headers: { "Content-Type": "application/octet-stream", "X-Plate-Name": encodeURIComponent(file.name) } });
    state.job = null;
    await openPlate(meta);
    location.hash = `plate=${meta.id}`;
    status("drag a box around the building");
  } catch (e) { status(e.message, true); }
}

function openPlate(meta, draft) {
  return new Promise((resolve, reject) => {
    state.plate = meta;
    const img = new Image();
    img.onload = () => { state.img = img; setupCanvas(draft); resolve(); };
    img.onerror = () => reject(new Error("the plate's picture could not be loaded"));
    img.src = `/api/plates/${encodeURIComponent(meta.id)}/first.png`;
    $("plateinfo").textContent = `${meta.name || ""} · ${meta.width}×${meta.height}` +
      (meta.kind === "video" ? ` · ${meta.frames} frames at ${Math.round(meta.fps * 100) / 100} fps` : "");
  });
}

function setupCanvas(draft) {
  const c = $("canvas"), p = state.plate;
  c.width = p.width; c.height = p.height;
  masks = {};
  for (const k of ["building", "holdout"]) masks[k] = h("canvas", { width: p.width, height: p.height });
  state.box = draft && draft.box ? draft.box : null;
  state.autoShown = false; state.est = null; state.estImgs = {}; state.edited = {};
  state.materialTouched = false;
  materialNote();
  showEstimates();
  $("drop").hidden = true;
  $("viewer").hidden = false;
  showPlate();
  fit();
  draw();
  updateButtons();
}

// The plate as large as the stage allows, whole: width-bound or height-bound.
function fit() {
  const c = $("canvas"), p = state.plate;
  if (!p) return;
  const wrap = $("stage").getBoundingClientRect();
  // Room for the tools, the transport and the history strip under the picture.
  const below = 90 + Math.min($("history").offsetHeight, 230);
  const room = Math.max(200, window.innerHeight - $("screen").getBoundingClientRect().top - below);
  const s = Math.min((wrap.width - 28) / p.width, room / p.height);
  for (const el of [c, $("vidwrap")]) {
    el.style.width = `${Math.round(p.width * s)}px`;
    el.style.height = `${Math.round(p.height * s)}px`;
  }
}
window.addEventListener("resize", fit);

// A matte (white = inside, opaque PNG) as a canvas whose alpha is the matte: what tinting needs.
function lumaToAlpha(img) {
  const t = h("canvas", { width: img.naturalWidth, height: img.naturalHeight }), tg = t.getContext("2d");
  tg.drawImage(img, 0, 0);
  const d = tg.getImageData(0, 0, t.width, t.height);
  for (let i = 0; i < d.data.length; i += 4) { d.data[i + 3] = d.data[i]; d.data[i] = d.data[i + 1] = d.data[i + 2] = 255; }
  tg.putImageData(d, 0, 0);
  return t;
}
function tinted(src, col, w, hgt) {
  const t = h("canvas", { width: w, height: hgt });
  const tc = t.getContext("2d");
  tc.drawImage(src, 0, 0, w, hgt);
  tc.globalCompositeOperation = "source-in";
  tc.fillStyle = col; tc.fillRect(0, 0, w, hgt);
  return t;
}
function draw() {
  const c = $("canvas"), ctx = c.getContext("2d");
  if (!state.img) return;
  ctx.drawImage(state.img, 0, 0);
  // Lines and labels the same size on screen whatever the plate's size.
  const shown = c.getBoundingClientRect().width || c.width;
  const lw = 1.5 * c.width / shown;
  // What the render will use: the building matte and the automatic holdouts.
  // The matte as a compositor checks one: what is not building is dimmed, the building
  // keeps its own pixels under a faint tint.
  if (state.estImgs.matte && $("show-matte").checked) {
    const o = h("canvas", { width: c.width, height: c.height }), oc = o.getContext("2d");
    oc.fillStyle = "rgba(0,0,0,0.6)"; oc.fillRect(0, 0, c.width, c.height);
    oc.globalCompositeOperation = "destination-out";
    oc.drawImage(state.estImgs.matte, 0, 0, c.width, c.height);
    ctx.drawImage(o, 0, 0);
    ctx.globalAlpha = 0.12; ctx.drawImage(tinted(state.estImgs.matte, "#e0a04a", c.width, c.height), 0, 0);
  }
  if (state.estImgs.holdouts && $("show-holdouts").checked && !state.autoShown) {
    ctx.globalAlpha = 0.4; ctx.drawImage(tinted(state.estImgs.holdouts, "#3fd0e8", c.width, c.height), 0, 0);
  }
  ctx.globalAlpha = 0.45;
  for (const [k, col] of [["building", "#e0a04a"], ["holdout", "#4aa3e0"]]) {
    ctx.drawImage(tinted(masks[k], col, c.width, c.height), 0, 0);
  }
  ctx.globalAlpha = 1;
  if (state.est && $("show-holdouts").checked && !state.autoShown) labelHoldouts(ctx, lw);
  if (state.est && $("show-horizon").checked) {
    const y = state.edited.horizon_y ?? state.est.horizon_y;
    ctx.strokeStyle = "#7fe07a"; ctx.lineWidth = lw; ctx.setLineDash([lw * 6, lw * 4]);
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(c.width, y); ctx.stroke(); ctx.setLineDash([]);
    ctx.font = `${(lw * 9).toFixed(1)}px system-ui, sans-serif`;
    const label = `horizon ${Math.round(y)}`;
    tag(ctx, label, c.width - ctx.measureText(label).width - 6 * lw, y - 4 * lw, "#7fe07a", lw);
  }
  if (state.box) {
    const [x0, y0, x1, y1] = state.box;
    ctx.lineWidth = 1.5 * lw;
    ctx.strokeStyle = "rgba(0,0,0,0.7)";
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.strokeStyle = "#e0a04a";
    ctx.setLineDash([lw * 5, lw * 4]);
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.setLineDash([]);
  }
}
function tag(ctx, text, x, y, col, lw) {
  ctx.font = `${(lw * 9).toFixed(1)}px system-ui, sans-serif`;
  const w = ctx.measureText(text).width;
  ctx.fillStyle = "rgba(0,0,0,0.7)";
  ctx.fillRect(x - 2 * lw, y - lw * 8.5, w + 4 * lw, lw * 11);
  ctx.fillStyle = col;
  ctx.fillText(text, x, y);
}
function labelHoldouts(ctx, lw) {
  for (const o of state.est.holdouts || []) {
    const [x0, y0, x1, y1] = o.bbox;
    ctx.strokeStyle = "#3fd0e8"; ctx.lineWidth = lw;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    tag(ctx, `${o.kind}${o.depth_m ? " " + o.depth_m.toFixed(1) + " m" : ""}`, x0 + 2 * lw, Math.max(y0, lw * 8) + lw * 8,
      "#3fd0e8", lw);
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
  if (!masks[k]) return false;
  const d = masks[k].getContext("2d").getImageData(0, 0, masks[k].width, masks[k].height).data;
  for (let i = 3; i < d.length; i += 64) if (d[i] > 128) return true;
  return false;
}
function maskPNG(k) {
  // White where painted, black elsewhere: what derrumbe's --mask reads.
  const t = h("canvas", { width: masks[k].width, height: masks[k].height });
  const tc = t.getContext("2d");
  tc.fillStyle = "#000"; tc.fillRect(0, 0, t.width, t.height);
  tc.drawImage(masks[k], 0, 0);
  return t.toDataURL("image/png");
}
function loadMask(k, url) {   // a stored mask (white = inside) into a paint layer
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => {
      const m = masks[k], t = h("canvas", { width: m.width, height: m.height }), tg = t.getContext("2d");
      tg.drawImage(img, 0, 0, m.width, m.height);
      const d = tg.getImageData(0, 0, m.width, m.height);
      for (let i = 0; i < d.data.length; i += 4) { d.data[i + 3] = d.data[i]; d.data[i] = d.data[i + 1] = d.data[i + 2] = 255; }
      tg.putImageData(d, 0, 0);
      m.getContext("2d").drawImage(t, 0, 0);
      resolve(true);
    };
    img.onerror = () => resolve(false);
    img.src = url;
  });
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
      // A box is inside the plate: a drag past the canvas's edge stops at it.
      const [x, y] = toPlate(ev).map((v, i) => Math.min(Math.max(v, 0), i ? c.height : c.width));
      state.box = [Math.round(Math.min(start[0], x)), Math.round(Math.min(start[1], y)),
                   Math.round(Math.max(start[0], x)), Math.round(Math.max(start[1], y))];
      draw();
    } else if (state.painting) paint(ev);
  });
  c.addEventListener("pointerup", () => {
    const wasBox = !!start;
    if (start && state.box && (state.box[2] - state.box[0] < 4 || state.box[3] - state.box[1] < 4)) state.box = null;
    const painted = state.painting && state.tool === "building";
    start = null; state.painting = false;
    updateButtons(); draw(); saveDraft();
    if ((wasBox && state.box) || painted) { clearError("box"); estimate(); }
  });
  for (const b of document.querySelectorAll(".tool")) {
    b.addEventListener("click", () => {
      state.tool = b.dataset.tool;
      for (const o of document.querySelectorAll(".tool")) o.classList.toggle("on", o === b);
    });
  }
  $("clear").addEventListener("click", () => {
    state.box = null; state.est = null; state.estImgs = {}; state.autoShown = false;
    for (const m of Object.values(masks)) m.getContext("2d").clearRect(0, 0, m.width, m.height);
    showEstimates(); draw(); updateButtons(); saveDraft();
  });
  for (const id of ["show-matte", "show-holdouts", "show-horizon"]) $(id).addEventListener("change", draw);
}

function updateButtons() {
  const ready = state.plate && (state.box || hasPaint("building"));
  for (const id of ["preview", "render", "wedge"]) $(id).disabled = !ready;
}

// ---- estimates: what the render will assume, before it runs -------------------------------
let estSeq = 0;
async function estimate() {
  if (!state.plate) return;
  const seq = ++estSeq;
  const body = { spec: { seed: specFromControls().seed || 1 } };
  if (hasPaint("building")) body.mask = maskPNG("building"); else body.box = state.box;
  $("est-note").textContent = "finding the building, the holdouts and the scale…";
  try {
    const r = await post(`/api/plates/${encodeURIComponent(state.plate.id)}/estimates`, body);
    if (seq !== estSeq) return;
    state.est = r.estimates;
    state.estImgs = {};
    await Promise.all(["matte", "holdouts"].map((k) => new Promise((res) => {
      const img = new Image();
      img.onload = () => { state.estImgs[k] = lumaToAlpha(img); res(); };
      img.onerror = res;
      img.src = r[k];
    })));
    const n = state.est.holdouts.length;
    $("est-note").textContent = `Estimated from the plate; edit a value to override it. ${n} holdout${n === 1 ? "" : "s"} ` +
      "(cyan) stay in front: Edit holdouts to change them.";
    showEstimates(); materialNote(); draw();
  } catch (e) { if (seq === estSeq) { $("est-note").textContent = ""; showError(e); } }
}
function materialNote() {
  const row = document.querySelector('#controls [data-field="material"]');
  if (!row) return;
  let note = row.querySelector(".suggest");
  if (!state.est) { if (note) note.remove(); return; }
  if (!state.materialTouched) $("f_material").value = state.est.material;
  if (!note) { note = h("div", { className: "hint suggest" }); row.append(note); }
  note.textContent = `suggested: ${state.est.material} — ${state.est.material_why}`;
}

// ---- jobs ----------------------------------------------------------------------------------
function jobBody(kind) {
  const body = { plate: state.plate.id, kind, spec: specFromControls() };
  if (hasPaint("building")) body.mask = maskPNG("building");
  else body.box = state.box;
  if (hasPaint("holdout")) body.holdout = maskPNG("holdout");
  // Found holdouts were painted in and edited: the paint is the artist's word now.
  if (state.autoShown) body.spec.no_auto_holdouts = true;
  for (const k of ["exr", "usd", "prores", "burn_in"]) body[k] = $(k).checked;
  return body;
}

async function submit(kind) {
  clearError();
  try {
    const j = await post("/api/jobs", jobBody(kind));
    await refreshJobs();
    openJob(j, { keepCanvas: true });
  } catch (e) { showError(e); }
}

async function wedge() {
  const values = $("wvalues").value.split(",").map((s) => s.trim()).filter(Boolean)
    .map((v) => (isNaN(Number(v)) ? v : Number(v)));
  try {
    const w = await post("/api/wedges", { ...jobBody("preview"), param: $("wparam").value, values });
    const div = h("div", { className: "wedge", id: "w_" + w.wedge },
      h("div", { className: "dim" }, `${w.param}: ${values.join(", ")} — rendering…`));
    $("wedges").prepend(div);
    watchWedge(w.wedge);
    refreshJobs();
  } catch (e) { showError(e); }
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
      try { await post(`/api/jobs/${encodeURIComponent(j.id)}/promote`, body); } catch (e) { status(e.message, true); }
      refreshJobs();
    });
    div.append(b, " ");
  }
}

// ---- progress: over the viewer, in the header, in the history --------------------------------
function clock(s) {
  if (s === null || s === undefined || !isFinite(s)) return "--:--";
  s = Math.max(0, Math.round(s));
  const hh = Math.floor(s / 3600), mm = Math.floor(s / 60) % 60, ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}
const stem = (j) => `${j.spec.name || "shot"}_v${String(j.spec.version || 1).padStart(3, "0")}`;
function frameText(p) {
  if (p.frame === null || p.frame === undefined || p.first_frame === null || p.first_frame === undefined) return "";
  return `Fra ${p.frame} · ${p.done}/${p.total}`;
}
function progressText(j) {
  const p = j.progress || {};
  if (j.state === "queued") return "queued";
  if (j.state === "done") return `done in ${clock((j.finished || 0) - (j.started || 0))}`;
  if (j.state === "failed") return "failed: " + (j.error || "");
  if (j.state === "cancelled") return "cancelled";
  const fra = frameText(p);
  const left = p.eta_total !== null && p.eta_total !== undefined ? ` · Remaining ${clock(p.eta_total)}` : "";
  // On a cluster (derrumbe serve --scheduler): how many frame chunks the workers have finished.
  const ch = p.chunks ? Object.values(p.chunks) : [];
  const chunks = ch.length ? ` · chunks ${ch.filter((c) => c.startsWith("done")).length}/${ch.length}` : "";
  return `${p.stage || "starting"} ${fra || `${p.done || 0}/${p.total || 1}`}${chunks}${left}`;
}
function fraction(j) {
  if (j.state === "done") return 1;
  const p = j.progress || {};
  return typeof p.fraction === "number" ? p.fraction : 0;
}
function hud(j) {
  const show = j && !DONE.includes(j.state);
  $("hud").hidden = !show;
  if (!j) return;
  if (show) {
    const p = j.progress || {};
    $("hud-title").textContent = `${j.kind} ${stem(j)}`;
    $("hud-stage").textContent = j.state === "queued" ? "queued" : (p.stage || "starting");
    $("hud-fra").textContent = frameText(p);
    const parts = [];
    if (p.eta_stage !== null && p.eta_stage !== undefined && p.stage) parts.push(`${p.stage} ${clock(p.eta_stage)}`);
    if (p.eta_total !== null && p.eta_total !== undefined) parts.push(`shot ${clock(p.eta_total)}`);
    $("hud-left").textContent = parts.length ? "Remaining " + parts.join(" · ") : "";
    $("hud-progress").value = Math.round(fraction(j) * 1000);
    const plan = p.plan || {};
    const names = Object.keys(plan).filter((s) => plan[s] > 0.05 || (p.stages || []).includes(s));
    const chips = (names.length ? names : p.stages || []).map((s) => {
      const seen = (p.stages || []).includes(s);
      const cls = s === p.stage ? "chip now" : seen ? "chip done" : "chip";
      return h("span", { className: cls, title: plan[s] ? `about ${clock(plan[s])} predicted` : "" }, s);
    });
    $("hud-stages").replaceChildren(...chips);
    status(`${j.kind} ${stem(j)}: ${progressText(j)}`);
  } else {
    status(`${j.kind} ${stem(j)} ${j.state}` + (j.error ? `: ${j.error}` : ""), j.state === "failed");
  }
}

function summary(j) {
  const s = j.spec, bits = [s.style, s.material, `dust ${s.dust}`, `seed ${s.seed}`];
  if (s.frames) bits.push(`frames ${s.frames}`); else if (s.duration) bits.push(`${s.duration} s`);
  if (s.size) bits.push(`${s.size} px`);
  return bits.join(" · ");
}
function when(t) {
  const d = new Date(t * 1000);
  const today = new Date().toDateString() === d.toDateString();
  return (today ? "" : d.toLocaleDateString() + " ") + d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
function renderJob(li, j) {
  li.className = `job state-${j.state}` + (state.selected === j.id ? " sel" : "");
  const thumb = h("img", { className: "thumb", alt: "", loading: "lazy",
    src: `/api/jobs/${encodeURIComponent(j.id)}/thumb.jpg?s=${j.state}` });
  const what = h("div", { className: "jobline" }, h("strong", {}, stem(j)),
    h("span", { className: "dim" }, j.label ? `${j.kind} · ${j.label}` : j.kind));
  const body = h("div", { className: "jobbody" }, what,
    h("div", { className: "dim small" }, `${j.plate_name || j.plate} · ${when(j.created)}`),
    h("div", { className: "small summary" }, summary(j)),
    h("div", { className: "small progress-text" }, progressText(j)),
    h("div", { className: "bar" }, h("i", { style: { width: `${Math.round(fraction(j) * 100)}%` } })));
  li.replaceChildren(thumb, body);
  if (j.state === "running" || j.state === "queued") {
    const cb = h("button", { className: "ghost small" }, "Cancel");
    cb.addEventListener("click", async (ev) => {
      ev.stopPropagation();
      try { await api(`/api/jobs/${encodeURIComponent(j.id)}/cancel`, { method: "POST" }); } catch (e) { status(e.message, true); }
    });
    body.append(cb);
  }
  li.title = "reopen this shot: its plate, box, masks and settings";
  li.onclick = () => openJob(j);
}

function watch(j, li) {
  if (state.streams[j.id] || DONE.includes(j.state)) return;
  const es = new EventSource(`/api/jobs/${encodeURIComponent(j.id)}/events`);
  state.streams[j.id] = es;
  es.onmessage = (ev) => {
    const nj = JSON.parse(ev.data);
    nj.plate_name = nj.plate_name || j.plate_name;
    renderJob(li, nj);
    if (state.job && state.job.id === nj.id) {
      state.job = nj;
      hud(nj);
      if (nj.state === "done") showResult(nj);
    }
    if (DONE.includes(nj.state)) { es.close(); delete state.streams[j.id]; }
  };
  es.onerror = () => { es.close(); delete state.streams[j.id]; setTimeout(refreshJobs, 2000); };
}

async function refreshJobs() {
  const jobs = await api("/api/jobs");
  const ul = $("jobs");
  ul.replaceChildren();
  for (const j of jobs) {
    const li = h("li", { id: "job_" + j.id });
    renderJob(li, j);
    ul.append(li);
    watch(j, li);
  }
  if (!jobs.length) ul.append(h("li", { className: "dim empty" }, "No shots yet."));
  fit();
  return jobs;
}

// ---- reopening a shot: plate, box, masks, settings, result --------------------------------------
function setControls(spec) {
  for (const el of $("controls").elements) {
    if (!el.name) continue;
    const v = spec[el.name];
    if (el.tagName === "SELECT") {
      const fd = Object.values(state.fields.groups).flat().find((f) => f.name === el.name);
      el.value = v ?? (fd ? fd.default : el.options[0].value);
    } else el.value = v === undefined || v === null ? "" : Array.isArray(v) ? v.join(",") : v;
  }
  startFrame();
  for (const k of ["exr", "usd", "prores", "burn_in"]) $(k).checked = !!spec[k];
}
async function openJob(j, opts = {}) {
  clearError();
  state.selected = j.id;
  state.job = j;
  for (const o of $("jobs").children) o.classList.toggle("sel", o.id === "job_" + j.id);
  location.hash = `job=${j.id}`;
  if (!opts.keepCanvas || !state.plate || state.plate.id !== j.plate) {
    const meta = await api(`/api/plates/${encodeURIComponent(j.plate)}`);
    await openPlate(meta, { box: j.spec.box || null });
    const base = `/api/jobs/${encodeURIComponent(j.id)}/inputs/`;
    if (j.spec.mask) await loadMask("building", base + "mask");
    if (j.spec.holdout) await loadMask("holdout", base + "holdout");
    state.autoShown = !!j.spec.no_auto_holdouts;
    setControls(j.spec);
    state.materialTouched = true;        // the job's own material, not a suggestion
    for (const k of ["height_m", "focal_mm", "horizon_y", "sun_azimuth", "sun_elevation"]) {
      if (j.spec[k] !== undefined && j.spec[k] !== null) state.edited[k] = j.spec[k];
    }
    updateButtons(); draw();
    estimate();
  }
  hud(j);
  if (j.state === "done") showResult(j); else showPlate();
}

function showPlate() {
  $("player").hidden = true; $("platewrap").hidden = false;
  const v = $("video"); v.pause(); fit();
}

async function showResult(j) {
  const m = await api(`/api/jobs/${encodeURIComponent(j.id)}/files/manifest.json`);
  if (!state.job || state.job.id !== j.id) return;
  state.manifest = m;
  const base = `/api/jobs/${encodeURIComponent(j.id)}`;
  const file = (rel) => `${base}/files/${rel.split("/").map(encodeURIComponent).join("/")}`;
  $("player").hidden = false;
  $("platewrap").hidden = true;          // the result where the plate was, as large
  fit();
  const v = $("video");
  v.src = file(m.movie);
  $("wipeimg").src = `/api/plates/${encodeURIComponent(j.plate)}/first.png`;
  $("scrub").max = String(m.frames.length - 1);
  $("frange").textContent = `${m.first_frame}–${m.first_frame + m.frames.length - 1} · ${m.fps} fps`;
  v.play().catch(() => {});
  const links = [[file(m.movie), "movie", m.movie], [`${base}/zip/frames`, "frames (zip)", `${m.stem}_frames.zip`],
                 [`${base}/files/manifest.json`, "manifest", `${m.stem}.manifest.json`]];
  if (m.exr) links.push([`${base}/zip/exr`, "EXR (zip)", `${m.stem}_exr.zip`]);
  if ((m.passes || []).length) links.push([`${base}/zip/passes`, "passes (zip)", `${m.stem}_passes.zip`]);
  if (m.usd) links.push([file(m.usd.file), "USD", m.usd.file]);
  for (const mv of (m.movies || []).slice(1)) links.push([file(mv), mv.split(".").pop().toUpperCase(), mv]);
  $("downloads").replaceChildren(...links.map(([href, t, name]) =>
    h("a", { href, download: name, title: name, dataset: { dl: t } }, t)));
}

// ---- the player: frames, not seconds; before / after wipe --------------------------------------
function frameIndex() {
  const m = state.manifest, v = $("video");
  if (!m) return 0;
  return Math.min(m.frames.length - 1, Math.max(0, Math.floor(v.currentTime * m.fps + 1e-3)));
}
function showFrame() {
  const m = state.manifest;
  if (!m) return;
  const i = frameIndex();
  $("fra").textContent = String(m.first_frame + i);
  $("scrub").value = String(i);
  $("t-play").textContent = $("video").paused ? "Play" : "Pause";
}
function seekFrame(i) {
  const m = state.manifest, v = $("video");
  if (!m) return;
  i = Math.min(m.frames.length - 1, Math.max(0, i));
  v.pause();
  v.currentTime = (i + 0.5) / m.fps;      // the middle of the frame: no rounding to the one before
  showFrame();
}
function tick() {
  showFrame();
  const v = $("video");
  if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(tick); else requestAnimationFrame(tick);
}
function bindPlayer() {
  const v = $("video");
  v.addEventListener("timeupdate", showFrame);
  v.addEventListener("loadedmetadata", showFrame);
  if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(tick); else requestAnimationFrame(tick);
  $("t-play").addEventListener("click", () => (v.paused ? v.play().catch(() => {}) : v.pause()));
  $("t-prev").addEventListener("click", () => seekFrame(frameIndex() - 1));
  $("t-next").addEventListener("click", () => seekFrame(frameIndex() + 1));
  $("t-first").addEventListener("click", () => seekFrame(0));
  $("t-last").addEventListener("click", () => seekFrame(1e9));
  $("scrub").addEventListener("input", () => seekFrame(Number($("scrub").value)));
  document.addEventListener("keydown", (ev) => {
    if ($("player").hidden || ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName)) return;
    if (ev.key === "ArrowLeft") seekFrame(frameIndex() - 1);
    else if (ev.key === "ArrowRight") seekFrame(frameIndex() + 1);
    else if (ev.key === "Home") seekFrame(0);
    else if (ev.key === "End") seekFrame(1e9);
    else if (ev.key === " ") (v.paused ? v.play().catch(() => {}) : v.pause());
    else return;
    ev.preventDefault();
  });
  // The wipe: the plate on the left of the line, the shot on the right.
  const wrap = $("vidwrap");
  let dragging = false;
  const setWipe = (x) => {
    const r = wrap.getBoundingClientRect();
    const f = Math.min(1, Math.max(0, (x - r.left) / r.width));
    $("wipeimg").style.clipPath = `inset(0 ${((1 - f) * 100).toFixed(2)}% 0 0)`;
    $("wipeline").style.left = `${(f * 100).toFixed(2)}%`;
  };
  $("t-wipe").addEventListener("click", () => {
    const on = $("wipeimg").hidden;
    $("wipeimg").hidden = $("wipeline").hidden = !on;
    $("t-wipe").classList.toggle("on", on);
    if (on) { const r = wrap.getBoundingClientRect(); setWipe(r.left + r.width / 2); }
  });
  wrap.addEventListener("pointerdown", (ev) => {
    if ($("wipeimg").hidden) return;
    dragging = true; wrap.setPointerCapture(ev.pointerId); setWipe(ev.clientX);
  });
  wrap.addEventListener("pointermove", (ev) => { if (dragging) setWipe(ev.clientX); });
  wrap.addEventListener("pointerup", () => { dragging = false; });
}

// ---- a draft survives a reload: the plate, its box and the settings -------------------------------
function saveDraft() {
  if (!state.plate || state.job) return;
  try {
    localStorage.setItem("derrumbe:draft:" + state.plate.id, JSON.stringify({ box: state.box, spec: specFromControls(),
      edited: state.edited }));
  } catch { /* private mode: no draft */ }
}
async function restore() {
  const m = /^#(job|plate)=([0-9a-f]{12})$/.exec(location.hash);
  if (!m) return;
  try {
    if (m[1] === "job") { await openJob(await api(`/api/jobs/${m[2]}`)); return; }
    let draft = null;
    try { draft = JSON.parse(localStorage.getItem("derrumbe:draft:" + m[2]) || "null"); } catch { draft = null; }
    await openPlate(await api(`/api/plates/${m[2]}`), draft);
    if (draft) { setControls(draft.spec || {}); state.edited = draft.edited || {}; if (state.box) estimate(); }
  } catch (e) { status(`could not reopen: ${e.message}`, true); }
}

// ---- wiring ----------------------------------------------------------------------------------------
window.addEventListener("DOMContentLoaded", async () => {
  await buildControls();
  bindCanvas();
  bindPlayer();
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
  $("controls").addEventListener("change", saveDraft);
  $("back").addEventListener("click", () => { showPlate(); draw(); });
  $("newshot").addEventListener("click", () => {
    state.job = null; state.plate = null; state.selected = null; location.hash = "";
    $("viewer").hidden = true; $("drop").hidden = false; $("hud").hidden = true; status("");
  });
  $("auto-holdouts").addEventListener("click", findHoldouts);
  await refreshJobs();
  await restore();
});

// The automatic holdouts of the boxed plate, copied into the holdout paint to erase or add to.
async function findHoldouts() {
  if (!state.plate || !state.box) { showError({ message: "drag a box around the building first", field: "box" }); return; }
  status("finding holdouts…");
  try {
    const r = await post(`/api/plates/${encodeURIComponent(state.plate.id)}/holdouts`, { box: state.box });
    await loadMask("holdout", r.matte);
    state.autoShown = true;
    draw();
    const kinds = r.objects.map((o) => o.kind);
    status(kinds.length ? `${kinds.length} holdouts in the paint: ${kinds.join(", ")} (erase or paint to change)` : "no holdouts found");
  } catch (e) { showError(e); }
}
