// The station page: renders the state the server sends (/events), and the reject gallery (/api/gallery).
// Everything shown is text set with textContent (file names and messages come from the journal): no markup from data.
"use strict";

const $ = (id) => document.getElementById(id);
const sharpnessHistory = [];  // [seq, value], the last minute or so
let lastSeq = null, lastRejects = null, bestSharpness = 0, received = null, galleryOldest = null;
const galleryShown = new Set();  // names of the tiles on the page: new rejects are added before them, nothing is rebuilt
let galleryBusy = false, galleryAgain = false, galleryLast = 0;
const GALLERY_EVERY_MS = 2000, GALLERY_PAGE = 24;  // gallery.PAGE

function text(id, value) { $(id).textContent = value; }
function fixed(value, digits) { return value === null || value === undefined ? "–" : Number(value).toFixed(digits); }
function percent(value, digits = 1) { return value === null || value === undefined ? "–" : (100 * value).toFixed(digits) + " %"; }
function clock(iso) { return iso ? iso.replace("T", " ").slice(11, 19) : "–"; }
function sigmas(value) { return value === null || value === undefined ? "–" : (value >= 0 ? "+" : "") + value.toFixed(2) + " σ"; }
function element(tag, content, className) {
  const node = document.createElement(tag);
  if (content !== undefined) node.textContent = content;
  if (className) node.className = className;
  return node;
}

function render(state) {
  received = { serverTime: state.server_time, at: Date.now() };
  renderReady(state.shift.ready, state.station);
  renderProblems(state);
  renderLive(state.live, state);
  renderShift(state.shift, state.station, state.journal);
  renderModel(state.model, state.shift);
  renderVerdicts(state.shift);
  if (state.shift.rejects !== lastRejects) {
    lastRejects = state.shift.rejects;
    refreshGallery();
  }
}

function renderReady(ready, station) {
  const badge = $("ready");
  const doubt = ready.running && ready.doubt;
  badge.className = "badge " + (doubt ? "doubt" : ready.running ? "running" : ready.state === "unknown" ? "unknown" : "stopped");
  badge.textContent = (station.ready_line ? "ready line: " : "station: ") + (doubt ? "IN DOUBT" : ready.running ? "RUNNING" : ready.state.toUpperCase());
  text("ready-why", (doubt ? ready.doubt : ready.why) + (ready.since && !doubt ? " (since " + clock(ready.since) + ")" : "") +
       (station.ready_line ? "" : " · no ready line is configured ([gpio.ready] line)"));
}

function renderProblems(state) {
  const problems = [...state.station.problems];
  if (state.model.problem) problems.push("model folder: " + state.model.problem);
  if (state.journal.problem) problems.push(state.journal.problem);
  if (state.live.problem && state.live.folder) problems.push("live tap: " + state.live.problem);
  if (!state.live.folder) problems.push("the station's live tap is off ([live] rate_hz = 0 or enabled = false in " + state.station.file + "): no live frame");
  $("problems").hidden = problems.length === 0;
  text("problems", problems.join(" · "));
}

function renderLive(live, state) {
  const tap = live.state;
  $("no-live").hidden = !!tap;
  $("setup-banner").hidden = !(tap && tap.mode === "setup");
  if (!tap) {
    text("live-age", "");
    $("live-image").removeAttribute("src");
    $("heat-image").hidden = true;
    $("roi").hidden = true;
    setVerdict(null);
    return;
  }
  text("setup-note", tap.note || "");
  text("live-age", "tap #" + tap.seq + ", written " + fixed(live.age_s, 1) + " s ago");
  if (tap.seq !== lastSeq) {
    lastSeq = tap.seq;
    swapImage($("live-image"), "/live/" + tap.frame);
    const heat = $("heat-image");
    if (tap.heatmap && tap.region) {
      swapImage(heat, "/live/" + tap.heatmap);
      const [top, left, bottom, right] = tap.region;
      heat.style.top = 100 * top + "%";
      heat.style.left = 100 * left + "%";
      heat.style.width = 100 * (right - left) + "%";
      heat.style.height = 100 * (bottom - top) + "%";
    }
    heat.hidden = !(tap.heatmap && $("show-heat").checked);
  }
  const roi = $("roi");
  if (tap.roi) {
    const [x, y, w, h] = tap.roi, [fw, fh] = tap.frame_size;
    roi.style.left = 100 * x / fw + "%";
    roi.style.top = 100 * y / fh + "%";
    roi.style.width = 100 * w / fw + "%";
    roi.style.height = 100 * h / fh + "%";
  }
  roi.hidden = !(tap.roi && $("show-roi").checked);
  const [fw, fh] = tap.frame_size;
  const roiText = state.station.roi ? "ROI " + state.station.roi.join(", ") + (tap.roi ? " (yellow)" : ": the frame shown is the ROI the model judges") : "no ROI: the whole frame";
  text("frame-caption", fw + "×" + fh + " px, " + roiText + ", live tap " + tap.rate_hz + "/s");
  setVerdict(tap.verdict);
  renderAids(tap.aids, tap.seq);
}

function swapImage(img, src) {
  const next = new Image();
  next.onload = () => { img.src = src; };
  next.src = src;
}

function setVerdict(verdict) {
  const box = $("verdict");
  if (!verdict) {
    box.className = "verdict none";
    text("verdict-word", "–");
    text("score-text", "no verdict in the live tap");
    text("verdict-facts", "");
    $("score-bar").style.width = "0";
    return;
  }
  box.className = "verdict " + verdict.verdict.toLowerCase();
  text("verdict-word", verdict.verdict);
  const ratio = verdict.score / verdict.threshold;
  text("score-text", "score " + fixed(verdict.score, 2) + (verdict.score > verdict.threshold ? " > " : " ≤ ") + "threshold " +
       fixed(verdict.threshold, 2) + " (" + (100 * ratio).toFixed(0) + " %)");
  $("score-bar").style.width = Math.min(100, 50 * ratio) + "%";  // the mark at 50 % is the threshold
  text("verdict-facts", "frame " + verdict.frame + " · " + fixed(verdict.latency_ms, 1) + " ms · " + (verdict.precision || "") + " · " + verdict.source +
       (verdict.defect_area !== null ? " · defect area " + verdict.defect_area + " px" : ""));
}

function renderAids(aids, seq) {
  if (!aids) return;
  text("sharpness", fixed(aids.sharpness, 1));
  if (sharpnessHistory.length === 0 || sharpnessHistory[sharpnessHistory.length - 1][0] !== seq) {
    sharpnessHistory.push([seq, aids.sharpness]);
    if (sharpnessHistory.length > 120) sharpnessHistory.shift();
  }
  bestSharpness = Math.max(bestSharpness, aids.sharpness);
  text("sharpness-best", "best seen " + fixed(bestSharpness, 1) + " (higher is sharper)");
  text("mean-grey", fixed(aids.mean, 0) + " of 255");
  const clipped = $("clipped");
  clipped.textContent = percent(aids.clipped_dark, 2) + " / " + percent(aids.clipped_bright, 2);
  clipped.className = aids.clipped_dark > 0.01 || aids.clipped_bright > 0.01 ? "warn-text" : "";
  text("fps", fixed(aids.fps, 1) + " frames/s");
  drawTrend();
  drawHistogram(aids.histogram);
}

function drawTrend() {
  const canvas = $("sharpness-trend"), g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  const values = sharpnessHistory.map((p) => p[1]);
  const top = Math.max(...values, 1e-9);
  g.strokeStyle = "#1565c0";
  g.beginPath();
  values.forEach((v, i) => {
    const x = values.length > 1 ? i * (canvas.width - 1) / (values.length - 1) : 0, y = canvas.height - 2 - v / top * (canvas.height - 4);
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
}

function drawHistogram(bins) {
  const canvas = $("histogram"), g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  const top = Math.max(...bins, 1), width = canvas.width / bins.length;
  bins.forEach((count, i) => {
    const height = Math.max(count > 0 ? 1 : 0, count / top * (canvas.height - 2));
    g.fillStyle = i === 0 || i === bins.length - 1 ? "#c62828" : "#455a64";
    g.fillRect(i * width, canvas.height - height, Math.max(width - 1, 1), height);
  });
}

function renderShift(shift, station, journal) {
  text("shift-start", "since " + shift.start.replace("T", " ").slice(0, 16));
  text("frames", shift.frames + (shift.from_summaries ? " (from the station's summaries)" : ""));
  text("rejects", shift.rejects);
  text("reject-rate", percent(shift.reject_rate, 2));
  const faults = Object.entries(shift.faults);
  text("faults", faults.length ? faults.map(([kind, n]) => kind + " " + n).join(", ") : "none");
  const drift = shift.drift;
  const limit = station.drift.limit_sigma;
  text("drift-shift", drift.normal ? sigmas(drift.shift_sigmas) + " (PASS mean " + fixed(drift.shift_mean, 2) + ", normal " +
       fixed(drift.normal.mean, 2) + " ± " + fixed(drift.normal.std, 2) + ")" : "– (the model folder has no normal scores)");
  const windowCell = $("drift-window");
  windowCell.textContent = drift.window_sigmas === null ? "filling: " + drift.window_filled + " of " + drift.window + " PASS frames"
    : sigmas(drift.window_sigmas) + " (last " + drift.window + " PASS, limit ±" + limit + " σ)";
  windowCell.className = drift.window_sigmas !== null && Math.abs(drift.window_sigmas) > limit ? "bad-text" : "";
  const alarm = $("drift-alarm");
  alarm.textContent = drift.alarm ? "since " + clock(drift.alarm.time) + ": " + drift.alarm.message : (station.drift.enabled ? "none" : "off");
  alarm.className = drift.alarm ? "bad-text" : "";
  text("journal-note", (journal.caught_up ? "" : "reading the journal… ") + journal.read + " records read" +
       (journal.directory ? " from " + journal.directory : "") + (shift.malformed ? ", " + shift.malformed + " malformed records not counted" : ""));
}

function renderModel(model, shift) {
  const list = $("model-facts");
  list.replaceChildren();
  const add = (term, value, className) => { list.append(element("dt", term), element("dd", value, className)); };
  if (model.problem) { add("folder", model.path); add("problem", model.problem, "bad-text"); return; }
  add("id", model.id.slice(0, 12) + (shift.model && shift.model !== model.id ? " (the station runs " + shift.model.slice(0, 12) + ": reload pending?)" : ""),
      shift.model && shift.model !== model.id ? "warn-text" : "");
  add("backbone", model.backbone + " (" + model.layers.join(", ") + ")");
  add("input", model.input.width + "×" + model.input.height + " " + model.input.color);
  add("precision running", shift.precision ? shift.precision + (shift.fallback ? " (fallback: " + shift.fallback + ")" : "") : "– (no start record read)",
      shift.fallback ? "warn-text" : "");
  add("verified on export", model.verified_precisions.join(", "));
  const applied = shift.threshold !== null ? shift.threshold : model.threshold.applied;
  add("threshold", fixed(applied, 3) + " (" + model.threshold.rule + ")");
  add("how it was set", model.threshold.how);
  if (model.normal_scores) add("normal scores", fixed(model.normal_scores.mean, 2) + " ± " + fixed(model.normal_scores.std, 2) + " over " + model.normal_scores.count + " images");
  add("folder", model.path + ", exported " + model.created.slice(0, 10));
}

function renderVerdicts(shift) {
  const body = $("verdicts").tBodies[0];
  const rows = shift.verdicts.map((v) => {
    const row = element("tr", undefined, v.verdict === "REJECT" ? "reject" : "");
    row.dataset.frame = v.frame;
    row.append(element("td", clock(v.time)), element("td", v.frame), element("td", v.verdict, "verdict-cell"),
               element("td", fixed(v.score, 2) + " / " + fixed(v.threshold, 2)), element("td", fixed(v.latency_ms, 1) + " ms"), element("td", v.source));
    return row;
  });
  body.replaceChildren(...rows);
  const faults = $("faults-list");
  faults.replaceChildren(...shift.recent_faults.map((f) => element("li", clock(f.time) + " " + f.kind + ": " + f.message)));
  if (!shift.recent_faults.length) faults.replaceChildren(element("li", "none this shift"));
}

function refreshGallery() {
  // At most one request every GALLERY_EVERY_MS, however fast rejects come; the last one is never skipped.
  if (galleryBusy) { galleryAgain = true; return; }
  const wait = galleryLast + GALLERY_EVERY_MS - Date.now();
  if (wait > 0) { galleryBusy = true; setTimeout(() => { galleryBusy = false; refreshGallery(); }, wait); return; }
  galleryBusy = true;
  galleryLast = Date.now();
  loadGallery().finally(() => {
    galleryBusy = false;
    if (galleryAgain) { galleryAgain = false; refreshGallery(); }
  });
}

async function loadGallery(older = false) {
  const query = older && galleryOldest ? "?before=" + encodeURIComponent(galleryOldest) : "";
  let answer;
  try {
    const response = await fetch("/api/gallery" + query, { cache: "no-store" });
    if (!response.ok) return;
    answer = await response.json();
  } catch (error) {
    return;  // the connection note says it; the next reject tries again
  }
  text("gallery-where", "newest first, from " + answer.archive);
  const gallery = $("gallery");
  const fresh = answer.pictures.filter((picture) => !galleryShown.has(picture.name));
  const tiles = fresh.map((picture) => {
    galleryShown.add(picture.name);
    const tile = element("button", undefined, "tile");
    tile.type = "button";
    tile.dataset.name = picture.name;
    const img = element("img");
    img.loading = "lazy";
    img.alt = picture.name;
    img.src = "/archive/" + encodeURIComponent(picture.name);
    const score = picture.score !== undefined ? "score " + fixed(picture.score, 2) + " / " + fixed(picture.threshold, 2) : "score: no record";
    tile.append(img, element("span", picture.time.replace("T", " ") + " · frame " + picture.frame), element("span", score));
    tile.addEventListener("click", () => openPicture(picture, score));
    return tile;
  });
  const first = galleryOldest === null, empty = $("gallery-empty");
  if (empty && tiles.length) empty.remove();
  if (older) gallery.append(...tiles); else gallery.prepend(...tiles);
  if (answer.pictures.length && (older || first)) galleryOldest = answer.pictures[answer.pictures.length - 1].name;
  if (older || first) $("gallery-more").hidden = answer.pictures.length < GALLERY_PAGE;  // a short page was the last
  if (!older && galleryShown.size === 0 && !empty) {
    const note = element("p", "no rejects archived", "caption");
    note.id = "gallery-empty";
    gallery.replaceChildren(note);
  }
}

function openPicture(picture, score) {
  const dialog = $("picture");
  $("picture-image").src = "/archive/" + encodeURIComponent(picture.heatmap || picture.name);
  text("picture-caption", picture.time.replace("T", " ") + " · frame " + picture.frame + " · " + picture.verdict + " · " + score +
       (picture.heatmap ? "" : " · no heatmap picture was written"));
  dialog.showModal();
}

function connect() {
  const events = new EventSource("/events");
  events.addEventListener("state", (message) => {
    $("connection").className = "connection";
    text("connection", "live");
    render(JSON.parse(message.data));
  });
  events.addEventListener("error", () => {
    $("connection").className = "connection lost";
    text("connection", "connection lost: retrying");
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("show-heat").addEventListener("change", () => { $("heat-image").hidden = !($("show-heat").checked && $("heat-image").getAttribute("src")); });
  $("show-roi").addEventListener("change", () => { lastSeq = null; });
  $("gallery-more").addEventListener("click", () => loadGallery(true));
  $("picture-close").addEventListener("click", () => $("picture").close());
  connect();
});
