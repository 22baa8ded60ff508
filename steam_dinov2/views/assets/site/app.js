// The static gallery: games.json once, a neighbours shard per click, thumbnails lazily.
// Everything from the data goes into the page through textContent or attributes, never as HTML.
"use strict";

const STORE = "https://store.steampowered.com/app/";
const PALETTE = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728",
  "#ff9896", "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f",
  "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5"];  // matplotlib's tab20, as in the figure
const MAP_SCALE = 10000;
const PAGE = 30;
let games = null;
let rowOf = new Map();
let normNames = [];
let current = -1;
const shards = new Map();

const $ = (id) => document.getElementById(id);
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}
function normalize(text) {
  return String(text).normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, " ").trim();
}
function status(text) { $("status").textContent = text; }
function nameOf(row) { return games.names[row] || games.ids[row]; }

function thumb(row) {
  if (!games.thumb[row]) return el("div", { className: "noimg", title: nameOf(row) });
  const img = el("img", { loading: "lazy", alt: nameOf(row), width: 150, height: 225 });
  img.src = `thumbs/${Math.floor(row / games.shard)}/${row}.webp`;
  return img;
}

function tile(row, score, isQuery) {
  const picture = thumb(row);
  picture.addEventListener("click", () => show(row));
  const caption = el("div", { className: "name", textContent: nameOf(row) });
  const box = el("div", { className: isQuery ? "tile query" : "tile" }, picture, caption);
  box.dataset.row = row;
  if (score !== null) box.append(el("div", { className: "score", textContent: score.toFixed(3) }));
  const id = games.ids[row];
  // Only a Steam app has a store page; own images (import-folder) are named, never linked.
  if (games.steam && games.steam[row] === 1) {
    box.append(el("a", { href: STORE + id, target: "_blank", rel: "noopener", textContent: id }));
  } else {
    box.append(el("div", { textContent: id }));
  }
  return box;
}

async function neighbours(row) {
  const s = Math.floor(row / games.shard);
  if (!shards.has(s)) {
    const response = await fetch(`data/neighbors-${s}.json`);
    if (!response.ok) throw new Error(`data/neighbors-${s}.json: HTTP ${response.status}`);
    shards.set(s, await response.json());
  }
  const shard = shards.get(s), i = row % games.shard;
  return shard.rows[i].map((r, j) => [r, shard.scores[i][j]]).filter(([r]) => r >= 0);
}

async function show(row, { push = true } = {}) {
  if (!(row >= 0 && row < games.count)) return;
  current = row;
  if (push && location.hash !== "#" + encodeURIComponent(games.ids[row])) {
    history.pushState(null, "", "#" + encodeURIComponent(games.ids[row]));
  }
  $("query").replaceChildren(tile(row, null, true));
  const list = await neighbours(row);
  if (current !== row) return;  // another click came first
  $("grid").replaceChildren(...list.map(([r, s]) => tile(r, s, false)));
  status(`${list.length} look-alikes of ${nameOf(row)}`);
  drawMap();
}

function showCluster(c, page = 0) {
  const rows = [];
  for (let r = 0; r < games.count; r++) if (games.cluster[r] === c) rows.push(r);
  $("query").replaceChildren();
  const pageRows = rows.slice(page * PAGE, (page + 1) * PAGE);
  $("grid").replaceChildren(...pageRows.map((r) => tile(r, null, false)));
  if ((page + 1) * PAGE < rows.length) {
    $("grid").append(el("button", { type: "button", textContent: "More",
      onclick: () => showCluster(c, page + 1) }));
  }
  status(`cluster ${c}: ${rows.length} games, page ${page + 1}`);
}

function search(text) {
  const words = normalize(text).split(" ").filter(Boolean);
  const out = [];
  const exact = rowOf.get(text.trim());
  if (exact !== undefined) out.push(exact);
  if (words.length) {
    for (let r = 0; r < games.count && out.length < 20; r++) {
      if (r !== exact && words.every((w) => normNames[r].includes(w))) out.push(r);
    }
  }
  $("results").replaceChildren(...out.map((r) => el("li", {},
    el("button", { type: "button", textContent: `${nameOf(r)} (${games.ids[r]})`,
      onclick: () => show(r) }))));
}

function mapPoint(row, canvas) {
  const pad = 8, side = canvas.width - 2 * pad;
  return [pad + games.x[row] / MAP_SCALE * side, pad + games.y[row] / MAP_SCALE * side];
}

function drawMap() {
  const canvas = $("map");
  if (!games.x) { canvas.hidden = true; $("clusters").hidden = true; return; }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const size = games.count > 5000 ? 1.5 : 3;
  for (let r = 0; r < games.count; r++) {
    const [x, y] = mapPoint(r, canvas);
    ctx.fillStyle = PALETTE[games.cluster[r] % PALETTE.length];
    ctx.fillRect(x - size / 2, y - size / 2, size, size);
  }
  if (current >= 0) {
    const [x, y] = mapPoint(current, canvas);
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(x, y, 7, 0, 2 * Math.PI);
    ctx.stroke();
  }
}

function onMapClick(event) {
  const canvas = $("map"), box = canvas.getBoundingClientRect();
  const px = (event.clientX - box.left) * canvas.width / box.width;
  const py = (event.clientY - box.top) * canvas.height / box.height;
  let best = -1, bestD = Infinity;
  for (let r = 0; r < games.count; r++) {
    const [x, y] = mapPoint(r, canvas);
    const d = (x - px) ** 2 + (y - py) ** 2;
    if (d < bestD) { best = r; bestD = d; }
  }
  if (best >= 0) show(best);
}

function fromHash() {
  let id = location.hash.slice(1);
  try { id = decodeURIComponent(id); } catch { return; }  // a malformed link opens nothing
  const row = rowOf.get(id);
  if (row !== undefined) show(row, { push: false });
}

async function main() {
  const response = await fetch("data/games.json");
  if (!response.ok) throw new Error(`data/games.json: HTTP ${response.status}`);
  games = await response.json();
  games.ids.forEach((id, r) => rowOf.set(id, r));
  normNames = games.names.map(normalize);
  $("setting").textContent = `${games.count} games, setting ${games.setting}`;
  $("search").addEventListener("input", (e) => search(e.target.value));
  $("random").addEventListener("click", () => show(Math.floor(Math.random() * games.count)));
  $("map").addEventListener("click", onMapClick);
  if (games.clusters) {
    const select = $("clusters");
    select.append(el("option", { value: "", textContent: "Browse a cluster…" }));
    games.clusters.forEach((c) => select.append(el("option", { value: String(c.cluster),
      textContent: `${c.cluster} (${c.size}): ${c.central.map(nameOf).join(", ")}` })));
    select.addEventListener("change", () => select.value !== "" && showCluster(Number(select.value)));
  }
  window.addEventListener("popstate", fromHash);
  drawMap();
  status(`${games.count} games: search by name, click the map, or pick a random game`);
  if (location.hash.length > 1) fromHash();
  document.body.dataset.ready = "1";
}

main().catch((e) => status(`could not load the gallery: ${e.message}`));
