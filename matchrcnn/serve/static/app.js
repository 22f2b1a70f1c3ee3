// The visual search page: upload a photo to /api/search, draw its garments over it, and show
// the shop items of the garment clicked as a grid of crops. Plain DOM, no libraries.
"use strict";

// The project's palette (matchrcnn/visualize.py, as in query.png): garment i keeps colour i.
const PALETTE = ["#e6194b", "#3cb44b", "#0082c8", "#f58230", "#911eb4", "#46f0f0", "#f032e6",
  "#d2f53c", "#fabed4", "#008080", "#aa6e28", "#800000", "#000080"];
const SVG = "http://www.w3.org/2000/svg";
const PHOTO_SIDE = 560; // the photo is shown scaled to this longest side...
const MAX_UPSCALE = 6; // ...but a small one at most this many times its size

const $ = (id) => document.getElementById(id);
const state = {
  file: null, previewUrl: null, result: null, selected: -1, request: 0, asked: null,
};

function colour(index) {
  return PALETTE[index % PALETTE.length];
}

function showStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function errorText(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((entry) => `${(entry.loc || []).slice(-1)[0]}: ${entry.msg}`).join("; ");
  }
  return `the service answered ${status}`;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(errorText(body, response.status));
  return body;
}

async function loadGallery() {
  try {
    const info = await api("/api/gallery");
    $("gallery-info").textContent = `${info.items.toLocaleString()} shop items from ` +
      `${info.images.toLocaleString()} images, ${info.index.kind} index`;
    $("topk").max = info.max_topk;
    for (const category of info.categories) {
      const option = document.createElement("option");
      option.value = category.id;
      option.textContent = category.name.replaceAll("_", " ");
      $("category").append(option);
    }
  } catch (error) {
    $("gallery-info").textContent = `Gallery unavailable: ${error.message}`;
  }
}

function choose(file) {
  if (!file) return;
  state.file = file;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  search();
}

// A new search when the photo or a setting has changed; the same photo keeps its garment
// selected (its garments stay the same when only top-k or the category setting changes).
async function search() {
  if (!state.file) return;
  const settings = [$("topk").value, $("min-score").value, $("same-category").checked];
  const asked = { file: state.file, key: settings.join("|") };
  if (state.asked && state.asked.file === asked.file && state.asked.key === asked.key) return;
  const samePhoto = state.asked !== null && state.asked.file === asked.file;
  state.asked = asked;
  const request = ++state.request;
  const form = new FormData();
  form.append("image", state.file);
  form.append("topk", settings[0]);
  form.append("min_score", settings[1]);
  form.append("same_category", settings[2]);
  showStatus(`Searching for the garments of ${state.file.name}\u2026`);
  let result;
  try {
    result = await api("/api/search", { method: "POST", body: form });
  } catch (error) {
    if (request === state.request) {
      state.asked = null; // the same request may be tried again
      showStatus(error.message, true);
      $("result").hidden = true;
      $("matches").hidden = true;
    }
    return;
  }
  if (request !== state.request) return; // a newer search has started
  state.result = result;
  renderPhoto();
  const count = result.items.length;
  showStatus(count ? `${count} garment${count > 1 ? "s" : ""} found: click one to see ` +
    "its matches" : `No garment detected with a score of at least ${result.min_score}`);
  select(count ? (samePhoto ? Math.min(Math.max(state.selected, 0), count - 1) : 0) : -1);
}

function renderPhoto() {
  const { width, height, items } = state.result;
  const scale = Math.min(PHOTO_SIDE / Math.max(width, height), MAX_UPSCALE);
  $("preview").style.width = `${Math.round(width * scale)}px`;
  $("preview").src = state.previewUrl;
  const labelSize = Math.max(width, height) / 24;
  const overlay = $("overlay");
  overlay.setAttribute("viewBox", `0 0 ${width} ${height}`);
  overlay.replaceChildren();
  const list = $("garments");
  list.replaceChildren();
  items.forEach((garment, index) => {
    const group = document.createElementNS(SVG, "g");
    group.classList.add("garment");
    group.dataset.index = index;
    group.style.color = colour(index);
    for (const polygon of garment.outline) {
      const shape = document.createElementNS(SVG, "polygon");
      shape.setAttribute("points", polygon.map((point) => point.join(",")).join(" "));
      shape.setAttribute("fill", colour(index));
      shape.setAttribute("stroke", colour(index));
      group.append(shape);
    }
    const [x1, y1, x2, y2] = garment.box;
    const box = document.createElementNS(SVG, "rect");
    box.setAttribute("x", x1);
    box.setAttribute("y", y1);
    box.setAttribute("width", Math.max(1, x2 - x1));
    box.setAttribute("height", Math.max(1, y2 - y1));
    box.setAttribute("stroke", colour(index));
    box.setAttribute("pointer-events", "all");
    group.append(box);
    const number = document.createElementNS(SVG, "text");
    number.setAttribute("x", x1 + labelSize / 4);
    number.setAttribute("y", y1 + labelSize);
    number.setAttribute("font-size", labelSize);
    number.setAttribute("fill", colour(index));
    number.textContent = index + 1;
    group.append(number);
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${index + 1}: ${garment.category} (${garment.score.toFixed(2)})`;
    group.append(title);
    group.addEventListener("click", () => select(index));
    overlay.append(group);

    const entry = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.index = index;
    button.style.color = colour(index);
    button.textContent = `${garment.category.replaceAll("_", " ")} ` +
      `(score ${garment.score.toFixed(2)})`;
    button.addEventListener("click", () => select(index));
    entry.append(button);
    list.append(entry);
  });
  $("result").hidden = false;
}

function select(index) {
  state.selected = index;
  for (const element of document.querySelectorAll("#overlay .garment, #garments button")) {
    element.classList.toggle("selected", Number(element.dataset.index) === index);
  }
  renderGrid();
}

function renderGrid() {
  const grid = $("grid");
  grid.replaceChildren();
  if (!state.result || state.selected < 0) {
    $("matches").hidden = true;
    return;
  }
  const garment = state.result.items[state.selected];
  const wanted = $("category").value;
  const shown = garment.retrieved.filter(
    (hit) => wanted === "" || String(hit.category_id) === wanted);
  $("matches-title").textContent = `Garment ${state.selected + 1} ` +
    `(${garment.category.replaceAll("_", " ")}): ${shown.length} of ` +
    `${garment.retrieved.length} shop items`;
  for (const hit of shown) {
    const figure = document.createElement("figure");
    figure.dataset.itemId = hit.item_id;
    figure.dataset.categoryId = hit.category_id;
    const link = document.createElement("a");
    link.href = hit.image_url;
    link.target = "_blank";
    link.rel = "noopener";
    const image = document.createElement("img");
    image.src = hit.crop_url;
    image.alt = `shop item ${hit.item_id}`;
    link.append(image);
    const caption = document.createElement("figcaption");
    const probability = document.createElement("span");
    probability.className = "probability";
    probability.textContent = `#${hit.rank} p = ${hit.match_score.toFixed(3)}`;
    const details = document.createElement("div");
    details.textContent = hit.category.replaceAll("_", " ");
    const ids = document.createElement("div");
    ids.textContent = `item ${hit.item_id}` +
      (hit.image_id === null ? "" : ` \u00b7 image ${hit.image_id}`);
    caption.append(probability, details, ids);
    figure.append(link, caption);
    grid.append(figure);
  }
  $("matches").hidden = false;
}

function setUp() {
  const drop = $("drop");
  $("photo").addEventListener("change", (event) => choose(event.target.files[0]));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    choose(event.dataTransfer.files[0]);
  });
  for (const id of ["topk", "min-score", "same-category"]) {
    $(id).addEventListener("change", search);
  }
  $("category").addEventListener("change", renderGrid);
  loadGallery();
}

setUp();
