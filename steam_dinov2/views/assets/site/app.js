// The static gallery: games.json once, a neighbours shard per click, thumbnails lazily.
// Everything from the data goes into the page through textContent or attributes, never as HTML.
"use strict";

const STORE = "https://store.steampowered.com/app/";
const OWN_ID_BASE = 2 ** 32;  // core/files.OWN_ID_BASE: ids from here on are own images, not Steam's
// Kelly's colours of maximum contrast, the figure's palette (views/map.PALETTE); games.json
// says which one each cluster takes, so that clusters lying side by side differ.
const PALETTE = ["#f3c300", "#875692", "#f38400", "#a1caf1", "#be0032", "#c2b280", "#008856",
  "#e68fac", "#0067a5", "#f99379", "#604e97", "#b3446c", "#882d17", "#8db600", "#654522", "#e25822", "#2b3d26"];
const MAP_SCALE = 10000;
const PAGE = 30;  // tiles per page of a cluster or of the search results
const LANDING = 24;  // tiles on the landing page
let games = null;
let rowOf = new Map();
let normNames = [];
let excluded = new Set();
let current = -1;
let cursor = -1;  // the map point under the mouse or the keyboard
let shownRows = [];  // the rows of the tiles now on the page (ringed on the map)
let base = null;  // the map's points, drawn once into an offscreen canvas
let matches = [];
const colourOf = new Map();  // cluster -> colour, as the exporter chose them (the figure's)
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
function thumbUrl(row) { return `thumbs/${Math.floor(row / games.shard)}/${row}.webp`; }
function plural(n, word) { return `${n} ${n === 1 ? word : word.endsWith("h") ? word + "es" : word + "s"}`; }

function thumb(row) {
  if (!games.thumb[row]) return el("div", { className: "noimg" });
  const img = el("img", { loading: "lazy", alt: "", width: 150, height: 225 });
  img.src = thumbUrl(row);
  return img;
}

// A tile is a button (Tab reaches it, Enter opens it) with the picture and the name; the score
// and the store link sit beside it. Hovering or focusing it rings its point on the map.
function tile(row, score, isQuery) {
  const open = el("button", { type: "button", className: "open", title: nameOf(row) },
    thumb(row), el("span", { className: "name", textContent: nameOf(row) }));
  open.dataset.row = row;
  if (isQuery) open.setAttribute("aria-current", "page");
  open.addEventListener("click", () => show(row));
  for (const on of ["mouseenter", "focus"]) open.addEventListener(on, () => pointAt(row, false));
  for (const off of ["mouseleave", "blur"]) open.addEventListener(off, () => pointAt(-1, false));
  const box = el("div", { className: isQuery ? "tile query" : "tile" }, open);
  if (score !== null) box.append(el("div", { className: "score", textContent: score.toFixed(3) }));
  const id = games.ids[row];
  // Only a Steam app has a store page; own images (import-folder) are named, never linked.
  if (games.steam && games.steam[row] === 1) {
    box.append(el("a", { href: STORE + id, target: "_blank", rel: "noopener", textContent: id }));
  } else {
    box.append(el("div", { className: "id", textContent: id }));
  }
  return box;
}

function fill(title, rows, scores = null) {
  $("title").textContent = title;
  $("grid").replaceChildren(...rows.map((r, j) => tile(r, scores ? scores[j] : null, false)));
  shownRows = rows;
  drawMap();
}

// Arrow keys move the focus through a list of buttons (the results, the tiles).
function arrowKeys(container, selector) {
  container.addEventListener("keydown", (e) => {
    const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key];
    if (!step) return;
    const items = [...container.querySelectorAll(selector)];
    const i = items.indexOf(document.activeElement);
    if (i < 0) return;
    e.preventDefault();
    if (i + step < 0 && container === $("results")) { $("search").focus(); return; }
    items[Math.max(0, Math.min(items.length - 1, i + step))].focus();
  });
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
  $("querybar").hidden = false;
  $("query").replaceChildren(tile(row, null, true));
  const list = await neighbours(row);
  if (current !== row) return;  // another click came first
  fill(`${plural(list.length, "look-alike")} of ${nameOf(row)}`, list.map(([r]) => r),
    list.map(([, s]) => s));
  status(`${plural(list.length, "look-alike")} of ${nameOf(row)}, most alike first`);
  const first = $("grid").querySelector(".open") || $("query").querySelector(".open");
  first.focus();
}

// The landing page: the best-known games (or a sample), reshuffled on request.
function landing(shuffle = false) {
  current = -1;
  $("querybar").hidden = true;
  $("query").replaceChildren();
  const pool = games.featured_by === "popularity" || !shuffle ? games.featured : eligible();
  const rows = shuffle ? sample(pool, LANDING) : pool.slice(0, LANDING);
  const what = games.featured_by === "popularity" ? "Best-known games" : "A sample of the collection";
  fill(`${what}: open one to see its look-alikes`, rows);
  status(`${games.count} games: search by name, pick a picture or a point on the map`);
}
function eligible() {
  const rows = [];
  for (let r = 0; r < games.count; r++) if (games.thumb[r] && !excluded.has(r)) rows.push(r);
  return rows;
}
function sample(pool, n) {
  const copy = pool.slice();
  for (let i = copy.length - 1; i > 0; i--) {  // Fisher-Yates
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j], copy[i]];
  }
  return copy.slice(0, n);
}

function showCluster(c, page = 0) {
  const rows = [];
  for (let r = 0; r < games.count; r++) if (games.cluster[r] === c && !excluded.has(r)) rows.push(r);
  current = -1;
  $("querybar").hidden = true;
  $("query").replaceChildren();
  const pageRows = rows.slice(page * PAGE, (page + 1) * PAGE);
  fill(`Cluster ${c}: ${plural(rows.length, "game")}` +
    (rows.length > PAGE ? `, ${page * PAGE + 1}-${page * PAGE + pageRows.length}` : ""), pageRows);
  if ((page + 1) * PAGE < rows.length) {
    $("grid").append(el("button", { type: "button", className: "more", textContent: "More",
      onclick: () => showCluster(c, page + 1) }));
  }
  status(`cluster ${c}: ${plural(rows.length, "game")}, page ${page + 1}`);
}

// --- Search: every word must occur in the name, one typo forgiven per word of 3+ letters (an
// extra, missing, wrong or swapped letter), as search.search_games does in the notebooks.

// 2: `word` occurs in `text`; 1: it occurs with one edit (Sellers' approximate substring match,
// with Damerau's swaps); 0: neither.
function wordScore(word, text) {
  if (text.includes(word)) return 2;
  if (word.length < 3) return 0;
  const m = word.length;
  let before = new Array(m + 1).fill(0), prev = new Array(m + 1), cur = new Array(m + 1);
  for (let i = 0; i <= m; i++) prev[i] = i;
  for (let j = 1; j <= text.length; j++) {
    cur[0] = 0;  // a match may start anywhere in the name
    for (let i = 1; i <= m; i++) {
      let v = Math.min(prev[i] + 1, cur[i - 1] + 1, prev[i - 1] + (word[i - 1] === text[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && word[i - 1] === text[j - 2] && word[i - 2] === text[j - 1]) {
        v = Math.min(v, before[i - 2] + 1);
      }
      cur[i] = v;
    }
    if (cur[m] <= 1) return 1;
    [before, prev, cur] = [prev, cur, before];
  }
  return 0;
}

function findGames(text) {
  const query = normalize(text), words = query.split(" ").filter(Boolean);
  const exact = rowOf.get(text.trim());
  const found = [];
  if (words.length) {
    for (let r = 0; r < games.count; r++) {
      if (r === exact) continue;
      let score = 0;
      for (const w of words) {
        const s = wordScore(w, normNames[r]);
        if (!s) { score = -1; break; }
        score += s;
      }
      if (score > 0) found.push([-score, !normNames[r].startsWith(query), normNames[r].length, normNames[r], r]);
    }
  }
  found.sort((a, b) => {
    for (let i = 0; i < 4; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
  });
  return (exact !== undefined ? [exact] : []).concat(found.map((f) => f[4]));
}

function search(text, shown = PAGE) {
  matches = text.trim() ? findGames(text) : [];
  const list = matches.slice(0, shown).map((r) => el("li", {},
    el("button", { type: "button", textContent: `${nameOf(r)} (${games.ids[r]})`,
      onclick: () => show(r) })));
  if (shown < matches.length) {
    list.push(el("li", {}, el("button", { type: "button", className: "more",
      textContent: `Show ${Math.min(PAGE, matches.length - shown)} more`,
      onclick: () => { search(text, shown + PAGE); $("results").querySelectorAll("button")[shown].focus(); } })));
  }
  $("results").replaceChildren(...list);
  if (!text.trim()) $("count").textContent = "";
  else if (!matches.length) $("count").textContent = `No game matches "${text.trim()}"`;
  else {
    $("count").textContent = `${plural(matches.length, "match")}` +
      (matches.length > shown ? `, ${shown} shown` : "") + ": Enter opens the first, arrows move";
  }
}

// --- The map: points by cluster colour; the tiles on the page ringed; the point under the mouse
// or the keyboard shows its thumbnail and name. Arrow keys move to the nearest point that way.

function mapPoint(row, canvas) {
  const pad = 8, side = canvas.width - 2 * pad;
  return [pad + games.x[row] / MAP_SCALE * side, pad + games.y[row] / MAP_SCALE * side];
}

function drawBase(canvas) {
  base = el("canvas", { width: canvas.width, height: canvas.height });
  const ctx = base.getContext("2d");
  const size = games.count > 5000 ? 1.5 : 3;
  for (let r = 0; r < games.count; r++) {
    const [x, y] = mapPoint(r, canvas);
    ctx.globalAlpha = excluded.has(r) ? 0.25 : 1;
    ctx.fillStyle = colourOf.get(games.cluster[r]) || PALETTE[games.cluster[r] % PALETTE.length];
    ctx.fillRect(x - size / 2, y - size / 2, size, size);
  }
}

function ring(ctx, row, radius, colour, width) {
  const [x, y] = mapPoint(row, ctx.canvas);
  ctx.strokeStyle = colour;
  ctx.lineWidth = width;
  ctx.beginPath();
  ctx.arc(x, y, radius, 0, 2 * Math.PI);
  ctx.stroke();
}

function drawMap() {
  const canvas = $("map");
  if (!games.x) { $("side").hidden = true; return; }
  if (!base) drawBase(canvas);
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(base, 0, 0);
  for (const r of shownRows) ring(ctx, r, 4, "#ffffffb0", 1);
  if (current >= 0) ring(ctx, current, 7, "#fff", 2);
  if (cursor >= 0) ring(ctx, cursor, 9, "#ff0", 3);
}

// Point at `row` on the map (-1: none): ring it, show its tip, mark its tile; `fromMap` when
// the map itself asked (then the tile of that game, if any, answers).
function pointAt(row, fromMap) {
  cursor = row;
  drawMap();
  for (const t of document.querySelectorAll(".open.hot")) t.classList.remove("hot");
  const tip = $("tip");
  if (row < 0 || !fromMap) { tip.hidden = true; if (row < 0) return; }
  if (fromMap) {
    for (const t of document.querySelectorAll(`.open[data-row="${row}"]`)) t.classList.add("hot");
    $("tipname").textContent = nameOf(row);
    const img = $("tipimg");
    img.hidden = !games.thumb[row];
    if (games.thumb[row]) img.src = thumbUrl(row);
    const canvas = $("map"), scale = canvas.getBoundingClientRect().width / canvas.width;
    const [x, y] = mapPoint(row, canvas);
    tip.hidden = false;
    const w = tip.offsetWidth, h = tip.offsetHeight, side = canvas.width * scale;
    tip.style.left = `${Math.max(0, Math.min(side - w, x * scale - w / 2))}px`;
    tip.style.top = `${y * scale > side / 2 ? Math.max(0, y * scale - h - 12) : y * scale + 12}px`;
  }
}

function nearest(px, py, canvas, maxD = Infinity) {
  let best = -1, bestD = maxD;
  for (let r = 0; r < games.count; r++) {
    const [x, y] = mapPoint(r, canvas);
    const d = (x - px) ** 2 + (y - py) ** 2;
    if (d < bestD) { best = r; bestD = d; }
  }
  return best;
}

function canvasXY(event) {
  const canvas = $("map"), box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * canvas.width / box.width,
    (event.clientY - box.top) * canvas.height / box.height];
}

function onMapClick(event) {
  const best = nearest(...canvasXY(event), $("map"));
  if (best >= 0) show(best);
}

function onMapMove(event) {
  const best = nearest(...canvasXY(event), $("map"), 12 ** 2);
  if (best !== cursor) pointAt(best, true);
}

// The nearest point in the arrow's direction (within 45 degrees either side of it).
function step(row, dx, dy) {
  const canvas = $("map"), [x0, y0] = mapPoint(row, canvas);
  let best = -1, bestD = Infinity;
  for (let r = 0; r < games.count; r++) {
    const [x, y] = mapPoint(r, canvas), along = (x - x0) * dx + (y - y0) * dy;
    const across = Math.abs((x - x0) * dy - (y - y0) * dx);
    if (r === row || along <= 0 || across > along) continue;
    const d = along * along + across * across * 4;  // prefer straight on
    if (d < bestD) { best = r; bestD = d; }
  }
  return best;
}

function onMapKey(event) {
  const dir = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowDown: [0, 1], ArrowUp: [0, -1] }[event.key];
  if (dir) {
    event.preventDefault();
    const start = cursor >= 0 ? cursor : current >= 0 ? current : centre();
    const next = cursor < 0 ? start : step(start, ...dir);
    if (next >= 0) pointAt(next, true);
  } else if (event.key === "Enter" && cursor >= 0) {
    event.preventDefault();
    const row = cursor;
    pointAt(-1, true);
    show(row);
  } else if (event.key === "Escape") {
    pointAt(-1, true);
  }
}
function centre() { const c = $("map"); return nearest(c.width / 2, c.height / 2, c); }

function fromHash() {
  let id = location.hash.slice(1);
  if (!id) { landing(); return; }
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
  excluded = new Set(games.excluded || []);
  for (const c of games.clusters || []) {
    if (/^#[0-9a-f]{6}$/.test(c.colour)) colourOf.set(c.cluster, c.colour);
  }
  $("setting").textContent = `${games.count} games, setting ${games.setting}`;
  const box = $("search");
  box.addEventListener("input", () => search(box.value));
  box.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && matches.length) { e.preventDefault(); show(matches[0]); }
    if (e.key === "ArrowDown" && matches.length) {
      e.preventDefault();
      $("results").querySelector("button").focus();
    }
  });
  arrowKeys($("results"), "button");
  arrowKeys($("grid"), "button");
  $("shuffle").addEventListener("click", () => {
    if (location.hash.length > 1) history.pushState(null, "", location.pathname);
    landing(true);
  });
  $("back").addEventListener("click", () => history.back());
  const map = $("map");
  map.addEventListener("click", onMapClick);
  map.addEventListener("mousemove", onMapMove);
  map.addEventListener("mouseleave", () => pointAt(-1, true));
  map.addEventListener("keydown", onMapKey);
  map.addEventListener("blur", () => pointAt(-1, true));
  if (games.clusters) {
    const select = $("clusters");
    select.append(el("option", { value: "", textContent: "Browse a cluster…" }));
    games.clusters.forEach((c) => select.append(el("option", { value: String(c.cluster),
      textContent: `${c.cluster} (${c.size}): ${c.central.map(nameOf).join(", ")}` })));
    select.addEventListener("change", () => select.value !== "" && showCluster(Number(select.value)));
  }
  window.addEventListener("popstate", fromHash);
  if (location.hash.length > 1) fromHash();
  else landing();
  document.body.dataset.ready = "1";
}

main().catch((e) => status(`could not load the gallery: ${e.message}`));
