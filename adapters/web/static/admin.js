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
        item.web_votes ? confirmButton(item) : null,
        item.review ? el("button", { type: "button", class: "link", onclick: async () => {
          try { await api("DELETE", `/api/admin/reviews/${encodeURIComponent(a.id)}`, undefined, cfg.csrf); loadQueue(); }
          catch (error) { status.textContent = `Could not reopen: ${error.message}`; }
        } }, "Reopen") : null,
        status));
    return box;
  }

  // Anonymous web votes move rankings in the web chat only, until an admin confirms them here.
  function confirmButton(item) {
    const id = item.answer.id;
    let confirmed = item.votes_confirmed;
    const label = () => confirmed
      ? `Web votes (${item.web_votes}) confirmed: they count in Slack and Teams too — withdraw`
      : `Confirm the ${item.web_votes} web vote(s): count them in Slack and Teams too`;
    const button = el("button", { type: "button", class: "confirm-votes", "aria-pressed": String(confirmed) }, label());
    button.addEventListener("click", async () => {
      try {
        await api(confirmed ? "DELETE" : "POST", `/api/admin/votes/${encodeURIComponent(id)}/confirm`, confirmed ? undefined : {}, cfg.csrf);
        confirmed = !confirmed;
        button.textContent = label();
        button.setAttribute("aria-pressed", String(confirmed));
      } catch (error) { button.textContent = `Could not change: ${error.message}`; }
    });
    return button;
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

  // --- tabs -----------------------------------------------------------------------------------
  function showTab(name) {
    for (const tab of ["overview", "knowledge"]) {
      document.getElementById(tab).hidden = tab !== name;
      document.getElementById(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    }
    if (name === "knowledge") { loadDocuments(); loadUploads(); }
  }
  document.getElementById("tab-overview").addEventListener("click", () => { history.replaceState(null, "", "#overview"); showTab("overview"); });
  document.getElementById("tab-knowledge").addEventListener("click", () => { history.replaceState(null, "", "#knowledge"); showTab("knowledge"); });
  document.getElementById("to-knowledge").addEventListener("click", (event) => { event.preventDefault(); history.replaceState(null, "", "#knowledge"); showTab("knowledge"); });

  // --- knowledge: documents -------------------------------------------------------------------
  const docBody = document.querySelector("#documents tbody");
  const docSearch = document.getElementById("doc-search");
  const docSource = document.getElementById("doc-source");
  const detail = document.getElementById("document-detail");
  const listSection = document.getElementById("documents-section");
  let searchTimer = null;

  function day(iso) { return iso ? iso.slice(0, 10) : ""; }

  async function loadDocuments() {
    const params = new URLSearchParams({ q: docSearch.value, source: docSource.value, limit: "200" });
    try {
      const data = await api("GET", `/api/admin/documents?${params}`);
      document.getElementById("documents-totals").textContent =
        `${data.all} documents, ${data.chunks} passages the bot can cite, from ${data.sources.length} source${data.sources.length === 1 ? "" : "s"}.`;
      const chosen = docSource.value;
      docSource.replaceChildren(el("option", { value: "" }, "All sources"), ...data.sources.map((s) => el("option", { value: s, selected: s === chosen }, s)));
      const more = document.getElementById("documents-more");
      more.hidden = data.total <= data.documents.length;
      more.textContent = `Showing ${data.documents.length} of ${data.total}: search to narrow the list.`;
      docBody.replaceChildren(...(data.documents.length ? data.documents.map((d) => {
        const remove = el("button", {
          type: "button", class: "remove", "data-doc": d.doc_id,
          onclick: async () => {
            if (!confirm(`Remove "${d.title}" from what the bot knows? (supportbot rollback brings it back)`)) return;
            remove.disabled = true;
            try { await api("DELETE", `/api/admin/documents?doc_id=${encodeURIComponent(d.doc_id)}`, undefined, cfg.csrf); }
            catch (error) { alert(`Could not remove it: ${error.message}`); }
            loadDocuments();
          },
        }, "Remove");
        return el("tr", { "data-doc": d.doc_id },
          el("td", {}, el("button", { type: "button", class: "link open-doc", title: d.doc_id, onclick: () => openDocument(d.doc_id) }, d.title)),
          el("td", {}, d.source), el("td", {}, d.access.join(", ")), el("td", {}, day(d.updated_at)),
          el("td", {}, d.chunks), el("td", { title: d.last_ingest || "" }, ago(d.last_ingest)), el("td", {}, remove));
      }) : [el("tr", {}, el("td", { colspan: 7, class: "hint" }, data.all ? "No document matches." : "Nothing ingested yet: drop files above, or run supportbot ingest PATH."))]));
    } catch (error) {
      docBody.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "error" }, `Could not load the documents: ${error.message}`)));
    }
  }

  async function openDocument(docId) {
    try {
      const data = await api("GET", `/api/admin/documents/chunks?doc_id=${encodeURIComponent(docId)}`);
      const d = data.document;
      document.getElementById("detail-title").textContent = d.title;
      document.getElementById("detail-meta").replaceChildren(
        `${d.doc_id} · source ${d.source} · access ${d.access.join(", ")} · ${d.chunks} passages`,
        d.url && /^https?:\/\//i.test(d.url) ? el("span", {}, " · ", el("a", { href: d.url, target: "_blank", rel: "noopener noreferrer" }, "open the original")) : null);
      document.getElementById("detail-chunks").replaceChildren(...data.chunks.map((c) => {
        const context = c.embedded.slice(0, Math.max(0, c.embedded.length - c.text.length)).trim();
        return el("li", { class: "chunk" }, context ? el("div", { class: "context" }, context) : null, el("div", { class: "text" }, c.text));
      }));
      listSection.hidden = true;
      detail.hidden = false;
    } catch (error) {
      alert(`Could not open the document: ${error.message}`);
    }
  }
  document.getElementById("detail-close").addEventListener("click", () => { detail.hidden = true; listSection.hidden = false; });
  docSearch.addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(loadDocuments, 200); });
  docSource.addEventListener("change", loadDocuments);
  document.getElementById("documents-form").addEventListener("submit", (event) => { event.preventDefault(); loadDocuments(); });

  // --- knowledge: uploads ---------------------------------------------------------------------
  const uploadList = document.getElementById("uploads");
  const dropzone = document.getElementById("dropzone");
  let uploadsTimer = null;
  let maxFileMb = null;

  function uploadRow(name, state, text) {
    return el("li", { class: `upload st-${state}`, "data-name": name }, name, el("span", { class: "state" }, text));
  }

  async function loadUploads() {
    clearTimeout(uploadsTimer);
    try {
      const data = await api("GET", "/api/admin/uploads");
      maxFileMb = data.max_file_mb;
      const local = [...uploadList.querySelectorAll("li.local")];
      uploadList.replaceChildren(...local, ...data.uploads.map((u) => uploadRow(u.name, u.job.state, progress(u.job) || u.job.state)));
      const busy = data.uploads.some((u) => !["done", "failed", "unknown"].includes(u.job.state));
      if (busy) uploadsTimer = setTimeout(loadUploads, 1000);
      if (data.uploads.some((u) => u.job.state === "done")) loadDocuments();
    } catch (error) {
      uploadList.replaceChildren(el("li", { class: "error" }, `Could not load the uploads: ${error.message}`));
    }
  }

  async function uploadFiles(files) {
    for (const file of files) {
      if (maxFileMb !== null && file.size > maxFileMb * 1024 * 1024) {
        uploadList.prepend(el("li", { class: "upload st-failed local" }, file.name, el("span", { class: "state" }, `larger than the ${maxFileMb} MB limit`)));
        continue;
      }
      try {
        const response = await fetch(`/api/admin/uploads/${encodeURIComponent(file.name)}`, {
          method: "PUT", body: file, credentials: "same-origin",
          headers: { "Content-Type": "application/octet-stream", "X-CSRF-Token": cfg.csrf },
        });
        if (!response.ok) {
          let detail = `HTTP ${response.status}`;
          try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
          uploadList.prepend(el("li", { class: "upload st-failed local" }, file.name, el("span", { class: "state" }, `failed: ${detail}`)));
        }
      } catch (error) {
        uploadList.prepend(el("li", { class: "upload st-failed local" }, file.name, el("span", { class: "state" }, `failed: ${error.message}`)));
      }
    }
    loadUploads();
  }

  document.getElementById("upload-input").addEventListener("change", (event) => { uploadFiles([...event.target.files]); event.target.value = ""; });
  dropzone.addEventListener("dragover", (event) => { event.preventDefault(); dropzone.classList.add("over"); });
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("over");
    uploadFiles([...event.dataTransfer.files]);
  });

  document.getElementById("show-reviewed").addEventListener("change", loadQueue);
  showTab(location.hash === "#knowledge" ? "knowledge" : "overview");
  loadSummary();
  loadSources();
  loadGaps();
  loadWorst();
  loadQueue();
})();
