// qwen3-scope offline dashboard viewer: plain JS, no dependencies, works from file://.
"use strict";
const DATA = {};
let pending = null;

function QS_LOAD(k, data) {
  DATA[k] = data;
  if (pending && pending.k === k) { const p = pending; pending = null; render(p.k, p.feature); }
}
window.QS_LOAD = QS_LOAD;

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children || []) node.appendChild(c);
  return node;
}

function fmt(x) { return (typeof x === "number") ? (Number.isInteger(x) || Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3)) : String(x); }

function loadSae(k, feature) {
  if (DATA[k]) { render(k, feature); return; }
  pending = { k: k, feature: feature };
  document.getElementById("dashboard").innerHTML = "<p class='muted'>loading…</p>";
  document.body.appendChild(el("script", { src: "data/sae-" + k + ".js" }));
}

function histogram(values, heights, cls, title) {
  const w = 360, h = 110, pad = 18;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "hist " + cls);
  svg.setAttribute("width", w); svg.setAttribute("height", h + pad);
  if (!heights.length) {
    const t = document.createElementNS(svg.namespaceURI, "text");
    t.setAttribute("x", 4); t.setAttribute("y", 20); t.textContent = "no nonzero activations (dead feature)";
    svg.appendChild(t);
  }
  const top = Math.max(1, ...heights);
  const bw = w / Math.max(1, heights.length);
  heights.forEach((c, i) => {
    const r = document.createElementNS(svg.namespaceURI, "rect");
    const bh = (c / top) * h;
    r.setAttribute("x", i * bw); r.setAttribute("y", h - bh); r.setAttribute("width", Math.max(1, bw - 1)); r.setAttribute("height", bh);
    const tt = document.createElementNS(svg.namespaceURI, "title"); tt.textContent = fmt(values[i]) + ": " + c; r.appendChild(tt);
    svg.appendChild(r);
  });
  if (values.length) {
    for (const [x, v, anchor] of [[2, values[0], "start"], [w - 2, values[values.length - 1], "end"]]) {
      const t = document.createElementNS(svg.namespaceURI, "text");
      t.setAttribute("x", x); t.setAttribute("y", h + 13); t.setAttribute("text-anchor", anchor); t.textContent = fmt(v);
      svg.appendChild(t);
    }
  }
  return el("div", { class: "card" }, [el("h3", { text: title }), svg]);
}

function table(title, header, rows, cls) {
  const t = el("table", {}, [el("tr", {}, header.map(h => el("th", { text: h })))]);
  rows.forEach(r => t.appendChild(el("tr", {}, r.map((c, i) => el("td", { text: fmt(c), class: (i ? "num " : "") + (cls || "") })))));
  return el("div", { class: "card" }, [el("h3", { text: title }), t]);
}

function context(strings, act, maxValue) {
  const values = new Array(act.t.length).fill(0);
  act.v.forEach(([k, v]) => { values[k] = v; });
  const line = el("div", { class: "context" });
  act.t.forEach((s, k) => {
    const v = values[k];
    const span = el("span", { class: "tok" + (k === act.q ? " q" : ""), title: JSON.stringify(strings[s]) + " " + fmt(v), text: strings[s].replace(/\n/g, "\u21b5") });
    if (v > 0) span.style.background = "rgba(234, 88, 12, " + Math.min(1, 0.12 + 0.88 * v / maxValue).toFixed(3) + ")";
    line.appendChild(span);
  });
  return line;
}

function render(k, feature) {
  const data = DATA[k], info = QS_INDEX.saes[k];
  const root = document.getElementById("dashboard");
  root.innerHTML = "";
  const f = data.features[feature];
  if (!f) { root.appendChild(el("p", { class: "muted", text: "feature " + feature + " is out of range (0.." + (data.features.length - 1) + ")" })); return; }
  // replaceState, not location.hash: a render must not fire `hashchange` (which would re-read the inputs and
  // race with a feature the user has typed meanwhile)
  history.replaceState(null, "", "#sae=" + k + "&feature=" + feature);
  const maxValue = f.acts.length ? f.acts[0].g[1] : 0;
  root.appendChild(el("h2", { id: "title", text: info.sae_id + " — feature " + f.i }));
  root.appendChild(el("p", { id: "summary", class: "muted",
    text: "Neuronpedia " + info.neuronpedia_id + "/" + f.i + " · frac_nonzero " + fmt(f.fz) + " · max activation " + fmt(maxValue) }));
  const strings = data.strings;
  root.appendChild(el("div", { class: "row" }, [
    histogram(f.fh[0], f.fh[1], "acts", "Activation density (nonzero activations)"),
    histogram(f.lh[0], f.lh[1], "logits", "Logit effects over the vocabulary"),
    table("Top logit effects", ["token", "value"], f.pos.map(([s, v]) => [JSON.stringify(strings[s]), v]), "pos"),
    table("Bottom logit effects", ["token", "value"], f.neg.map(([s, v]) => [JSON.stringify(strings[s]), v]), "neg"),
    table("Neuron alignment", ["neuron", "value", "share of L1"], f.na[0].map((n, i) => [n, f.na[1][i], f.na[2][i]])),
    table("Correlated neurons", ["neuron", "pearson", "cosine"], f.cn[0].map((n, i) => [n, f.cn[1][i], f.cn[2][i]])),
    table("Correlated features", ["feature", "pearson", "cosine"], f.cf[0].map((n, i) => [n, f.cf[1][i], f.cf[2][i]])),
  ]));
  const contexts = el("div", { class: "card", id: "contexts" }, [el("h3", { text: "Activating contexts" })]);
  let last = null;
  f.acts.forEach(a => {
    const key = a.g.join(",");
    if (key !== last) {
      const label = a.g[0] < 0 ? "Top activations (max " + fmt(a.g[1]) + ")"
        : "Interval " + fmt(a.g[0]) + " – " + fmt(a.g[1]) + " (contains " + (100 * a.g[2]).toFixed(1) + "% of nonzero activations)";
      contexts.appendChild(el("div", { class: "group", text: label }));
      last = key;
    }
    contexts.appendChild(context(strings, a, maxValue || 1));
  });
  if (!f.acts.length) contexts.appendChild(el("p", { class: "muted", text: "This feature never fired on the dataset." }));
  root.appendChild(contexts);
}

function show() {
  const k = parseInt(document.getElementById("sae").value, 10);
  const feature = parseInt(document.getElementById("feature").value, 10) || 0;
  loadSae(k, feature);
}

function step(delta, aliveOnly) {
  const input = document.getElementById("feature");
  const k = parseInt(document.getElementById("sae").value, 10);
  let f = (parseInt(input.value, 10) || 0) + delta;
  const data = DATA[k];
  if (aliveOnly && data) { while (f < data.features.length && data.features[f].fz === 0) f += 1; }
  input.value = Math.max(0, Math.min(f, QS_INDEX.saes[k].n_features - 1));
  show();
}

function init() {
  const select = document.getElementById("sae");
  document.getElementById("suite").textContent = QS_INDEX.suite + " · dataset: " + QS_INDEX.dataset + " · " +
    QS_INDEX.saes.length + " SAEs";
  QS_INDEX.saes.forEach(s => select.appendChild(el("option", { value: s.k, text: s.sae_id + " (" + s.alive + "/" + s.n_features + " alive)" })));
  document.getElementById("show").addEventListener("click", show);
  document.getElementById("prev").addEventListener("click", () => step(-1, false));
  document.getElementById("next").addEventListener("click", () => step(1, false));
  document.getElementById("next-alive").addEventListener("click", () => step(1, true));
  select.addEventListener("change", show);
  window.addEventListener("hashchange", fromHash);
  fromHash();
}

function fromHash() {  // links `index.html#sae=<k>&feature=<i>` open a feature directly
  const m = /sae=(\d+)&feature=(\d+)/.exec(location.hash);
  if (m) { document.getElementById("sae").value = m[1]; document.getElementById("feature").value = m[2]; }
  show();
}
init();
