// The admin page: activity chart, sources with "sync now", knowledge gaps, worst-rated answers
// with their traces, and the review queue.
"use strict";

(function () {
  const { config, el, ago, renderText, api } = window.sb;
  const cfg = config();
  const SVG = "http://www.w3.org/2000/svg";
  const post = (url, body) => api("POST", url, body === undefined ? {} : body, cfg.csrf);

  if (!cfg.chat) document.getElementById("chat-link").hidden = true;

  function failed(container, error) {
    container.replaceChildren(el("li", { class: "error" }, `Could not load: ${error.message}`));
  }

  // --- activity chart (inline SVG) ----------------------------------------------------------
  const SERIES = [["answered", "Answered"], ["declined", "Declined"], ["up", "👍"], ["down", "👎"]];

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  function chart(days) {
    const W = 720, H = 220, L = 36, R = 12, T = 12, B = 28;
    const max = Math.max(1, ...days.flatMap((d) => SERIES.map(([k]) => d[k])));
    const x = (i) => L + (days.length <= 1 ? 0 : (i * (W - L - R)) / (days.length - 1));
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", width: "100%" });
    for (const v of [0, Math.ceil(max / 2), max]) {
      root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      root.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, v));
    }
    if (days.length) {
      root.append(svg("text", { x: L, y: H - 8, class: "axis" }, days[0].day));
      root.append(svg("text", { x: W - R, y: H - 8, "text-anchor": "end", class: "axis" }, days[days.length - 1].day));
    }
    for (const [key, label] of SERIES) {
      const points = days.map((d, i) => `${x(i).toFixed(1)},${y(d[key]).toFixed(1)}`).join(" ");
      const line = svg("polyline", { points, class: `series s-${key}`, fill: "none" });
      line.append(svg("title", {}, label));
      root.append(line);
      days.forEach((d, i) => {
        if (d[key]) {
          const dot = svg("circle", { cx: x(i), cy: y(d[key]), r: 3, class: `dot s-${key}` });
          dot.append(svg("title", {}, `${d.day}: ${d[key]} ${label}`));
          root.append(dot);
        }
      });
    }
    return root;
  }

  async function loadSummary() {
    const totals = document.getElementById("totals");
    const box = document.getElementById("chart");
    try {
      const data = await api("GET", "/api/admin/summary");
      const t = data.totals;
      totals.replaceChildren(...SERIES.map(([k, label]) =>
        el("span", { class: `total s-${k}`, id: `total-${k}` }, el("span", { class: "swatch" }), `${label} `, el("strong", {}, t[k]))));
      box.replaceChildren(chart(data.days));
    } catch (error) {
      totals.textContent = `Could not load the activity: ${error.message}`;
    }
  }

  // --- sources --------------------------------------------------------------------------------
  let sourcesTimer = null;

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "--:--";
    const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, r = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
  }

  function progress(job) {
    if (!job) return "";
    const total = job.total === null || job.total === undefined ? "?" : job.total;
    if (job.state === "running") {
      const rate = job.rate ? ` · ${job.rate >= 10 ? Math.round(job.rate) : job.rate.toFixed(1)}/s` : "";
      const eta = job.total ? ` · ETA ${duration(job.eta_s)}` : "";
      return `running ${job.done}/${total}${rate}${eta} ${job.current || ""}`;
    }
    if (job.state === "done") return `done: ${job.summary || ""}`;
    if (job.state === "failed") return `failed: ${job.error || ""}`;
    return job.state;
  }

  async function loadSources() {
    const body = document.querySelector("#sources tbody");
    const empty = document.getElementById("sources-empty");
    clearTimeout(sourcesTimer);
    try {
      const data = await api("GET", "/api/admin/sources");
      empty.hidden = data.sources.length > 0;
      body.replaceChildren(...data.sources.map((s) => {
        const button = el("button", {
          type: "button", class: "sync", "data-source": s.name,
          onclick: async () => {
            button.disabled = true;
            try { await post(`/api/admin/sources/${encodeURIComponent(s.name)}/sync`); }
            catch (error) { alert(`Could not start the sync: ${error.message}`); }
            loadSources();
          },
        }, "Sync now");
        const last = s.last_sync_at ? ago(s.last_sync_at) : "never";
        return el("tr", {},
          el("td", {}, s.name), el("td", {}, s.kind),
          el("td", { class: `status st-${s.status}` }, s.status, s.last_error ? el("div", { class: "error small" }, s.last_error) : null),
          el("td", {}, s.documents), el("td", { title: s.last_summary || "" }, last),
          el("td", { class: "progress" }, progress(s.job)), el("td", {}, button));
      }));
      const busy = data.sources.some((s) => ["queued", "running"].includes(s.status) || (s.job && !["done", "failed", "unknown"].includes(s.job.state)));
      if (busy) sourcesTimer = setTimeout(loadSources, 2000);
    } catch (error) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "error" }, `Could not load the sources: ${error.message}`)));
    }
  }

  // --- knowledge gaps -------------------------------------------------------------------------
  async function loadGaps() {
    const list = document.getElementById("gaps");
    try {
      const data = await api("GET", "/api/admin/gaps");
      if (!data.gaps.length) {
        list.replaceChildren(el("li", { class: "hint" }, "No declined questions yet."));
        return;
      }
      list.replaceChildren(...data.gaps.map((g) => el("li", { class: "gap" },
        el("span", { class: "count", title: "times asked" }, `${g.count}×`), " ", el("span", { class: "question" }, g.question),
        g.examples.length > 1 ? el("ul", { class: "examples" }, g.examples.slice(1).map((e) => el("li", {}, e))) : null,
        el("div", { class: "meta" }, `last asked ${ago(g.last_asked)}`))));
    } catch (error) { failed(list, error); }
  }

  // --- answers with traces --------------------------------------------------------------------
  function fmt(value) {
    return typeof value === "number" ? value.toFixed(3) : String(value);
  }

  function traceView(trace) {
    if (!trace) return el("p", { class: "hint" }, "No trace stored.");
    const timings = Object.entries(trace.timings_ms || {}).map(([k, v]) => `${k} ${Math.round(v)} ms`).join(", ");
    return el("details", { class: "trace" },
      el("summary", {}, "Trace"),
      el("dl", {},
        el("dt", {}, "Searched for"), el("dd", {}, trace.query),
        el("dt", {}, "Models"), el("dd", {}, `embedder ${trace.embedder || "?"}, reranker ${trace.reranker || "none"}, generator ${trace.generator || "?"}, prompt ${trace.prompt_version || "?"}`),
        el("dt", {}, "Timings"), el("dd", {}, timings || "—")),
      el("table", { class: "table small" },
        el("thead", {}, el("tr", {}, el("th", {}, "#"), el("th", {}, "Passage"), el("th", {}, "Access"), el("th", {}, "Scores"))),
        el("tbody", {}, (trace.reranked || []).map((p, i) => el("tr", {},
          el("td", {}, i + 1), el("td", { title: p.chunk_id }, p.title || p.doc_id),
          el("td", {}, (p.access || []).join(", ")),
          el("td", {}, Object.entries(p.scores || {}).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")))))));
  }

  function answerCard(item, extra) {
    const a = item.answer;
    const q = a.question;
    return el("li", { class: `card ${a.decision}`, "data-answer-id": a.id },
      el("div", { class: "card-head" },
        el("span", { class: `badge ${a.decision}` }, a.decision),
        el("span", { class: "votes-count" }, `👍 ${item.up}  👎 ${item.down}`),
        el("span", { class: "meta" }, `${q.platform} · ${ago(a.created_at)} · confidence ${fmt(a.confidence)}`)),
      el("p", { class: "question" }, q.text),
      q.history && q.history.length ? el("p", { class: "meta" }, `after ${q.history.length} earlier turn(s)`) : null,
      el("div", { class: "answer-text" }, renderText(a.text)),
      a.citations.length ? el("ol", { class: "sources small" }, a.citations.map((c) => {
        const heading = c.heading_path.filter((h) => h && h !== c.title).join(" › ");
        return el("li", {}, `[${c.number}] ${c.title}`, heading ? ` — ${heading}` : "");
      })) : null,
      traceView(a.trace),
      extra || null);
  }

  async function loadWorst() {
    const list = document.getElementById("worst");
    try {
      const data = await api("GET", "/api/admin/worst");
      list.replaceChildren(...(data.answers.length ? data.answers.map((i) => answerCard(i)) : [el("li", { class: "hint" }, "No 👎 yet.")]));
    } catch (error) { failed(list, error); }
  }

  // --- review queue ---------------------------------------------------------------------------
  function reviewBox(item) {
    const a = item.answer;
    const marked = new Map(); // chunk_id -> passage
    const results = el("ol", { class: "results" });
    const status = el("span", { class: "review-status", role: "status" });
    const query = el("input", { type: "search", class: "review-search", value: a.question.text, "aria-label": "Search the index" });
    if (item.review) {
      for (const p of item.review.passages) marked.set(p.chunk_id, p);
      status.textContent = item.review.verdict === "unanswerable"
        ? "Reviewed: unanswerable"
        : `Reviewed: ${item.review.passages.length} passage(s) should have been found`;
    }
    async function search(event) {
      if (event) event.preventDefault();
      try {
        const data = await api("GET", `/api/admin/search?q=${encodeURIComponent(query.value)}`);
        results.replaceChildren(...data.passages.map((p) => {
          const box = el("input", { type: "checkbox", class: "mark", value: p.chunk_id, checked: marked.has(p.chunk_id) });
          box.addEventListener("change", () => { if (box.checked) marked.set(p.chunk_id, p); else marked.delete(p.chunk_id); });
          return el("li", {}, el("label", {}, box, " ",
            el("strong", {}, [p.title, ...p.heading_path.filter((h) => h && h !== p.title)].join(" › ")),
            el("span", { class: "meta" }, ` ${p.access.join(", ")}`),
            el("div", { class: "passage" }, p.text.length > 400 ? `${p.text.slice(0, 400)}…` : p.text)));
        }));
      } catch (error) { status.textContent = `Search failed: ${error.message}`; }
    }
    async function save(verdict) {
      const passages = verdict === "passages"
        ? [...marked.values()].map((p) => ({ chunk_id: p.chunk_id, doc_id: p.doc_id || "", title: p.title || "", text: p.text }))
        : [];
      if (verdict === "passages" && !passages.length) {
        status.textContent = "Search and tick at least one passage first.";
        return;
      }
      try {
        await post("/api/admin/reviews", { answer_id: a.id, verdict, passages });
        status.textContent = verdict === "unanswerable" ? "Reviewed: unanswerable" : `Reviewed: ${passages.length} passage(s) should have been found`;
        box.closest("li.card").classList.add("reviewed");
      } catch (error) { status.textContent = `Could not save: ${error.message}`; }
    }
    const box = el("div", { class: "review" },
      el("form", { class: "review-form", onsubmit: search }, query, el("button", { type: "submit" }, "Search")),
      results,
      el("div", { class: "review-actions" },
        el("button", { type: "button", class: "save-passages", onclick: () => save("passages") }, "Save: these passages should have been found"),
        el("button", { type: "button", class: "unanswerable", onclick: () => save("unanswerable") }, "Truly unanswerable"),
        item.review ? el("button", { type: "button", class: "link", onclick: async () => {
          try { await api("DELETE", `/api/admin/reviews/${encodeURIComponent(a.id)}`, undefined, cfg.csrf); loadQueue(); }
          catch (error) { status.textContent = `Could not reopen: ${error.message}`; }
        } }, "Reopen") : null,
        status));
    return box;
  }

  async function loadQueue() {
    const list = document.getElementById("queue");
    const reviewed = document.getElementById("show-reviewed").checked;
    try {
      const data = await api("GET", `/api/admin/queue?reviewed=${reviewed}`);
      list.replaceChildren(...(data.items.length
        ? data.items.map((i) => answerCard(i, reviewBox(i)))
        : [el("li", { class: "hint" }, reviewed ? "Nothing reviewed yet." : "The queue is empty.")]));
    } catch (error) { failed(list, error); }
  }

  document.getElementById("show-reviewed").addEventListener("change", loadQueue);
  loadSummary();
  loadSources();
  loadGaps();
  loadWorst();
  loadQueue();
})();
