// The look-alike pairs of the gallery: data/lookalikes.json (rows into games.json), one <li> a pair.
// Everything from the data goes into the page through textContent or attributes, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}
let games = null;
let pairs = [];

function side(row, studio) {
  const name = games.names[row] || games.ids[row];
  const picture = games.thumb[row]
    ? el("img", { loading: "lazy", alt: name, width: 150, height: 225,
      src: `thumbs/${Math.floor(row / games.shard)}/${row}.webp` })
    : el("div", { className: "noimg", title: name });
  const link = el("a", { href: "index.html#" + encodeURIComponent(games.ids[row]) }, picture);
  return el("div", { className: "tile" }, link,
    el("div", { className: "name", textContent: name }),
    el("div", { className: "studio", textContent: studio }));
}

function render(text) {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  const shown = pairs.filter((p) => words.every((w) => p.haystack.includes(w)));
  $("pairs").replaceChildren(...shown.map((p) => el("li", { className: "pair" },
    side(p.a, p.studioA), side(p.b, p.studioB),
    el("div", { className: "score", textContent: `#${p.rank}  cosine ${p.score.toFixed(3)}` }))));
  $("status").textContent = `${shown.length} of ${pairs.length} pairs`;
}

async function main() {
  const [g, l] = await Promise.all(["data/games.json", "data/lookalikes.json"].map(async (u) => {
    const response = await fetch(u);
    if (!response.ok) throw new Error(`${u}: HTTP ${response.status}`);
    return response.json();
  }));
  games = g;
  pairs = l.pairs.map(([a, b, score, studioA, studioB], i) => ({
    a, b, score, studioA, studioB, rank: i + 1,
    haystack: [games.names[a], games.names[b], studioA, studioB].join(" ").toLowerCase(),
  })).filter((p) => p.a >= 0 && p.a < games.count && p.b >= 0 && p.b < games.count);
  $("setting").textContent = `${games.count} games, setting ${games.setting}, mutual top-${l.k}`;
  $("filter").addEventListener("input", (e) => render(e.target.value));
  render("");
  document.body.dataset.ready = "1";
}

main().catch((e) => { $("status").textContent = `could not load the look-alikes: ${e.message}`; });
