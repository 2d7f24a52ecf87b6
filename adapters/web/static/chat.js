// The chat page: ask, read the streamed answer with numbered sources, vote, ask a follow-up.
"use strict";

(function () {
  const { config, el, ago, isWebUrl, hostNote, renderText, api } = window.sb;
  const cfg = config();
  const thread = document.getElementById("thread");
  const form = document.getElementById("ask-form");
  const input = document.getElementById("question");
  const button = document.getElementById("ask-button");
  const MAX_HISTORY = 20;
  let conversation = newId();
  let history = []; // earlier turns of this page's conversation: {speaker, text}

  function newId() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  if (cfg.admin) {
    document.getElementById("viewer").textContent = "Signed in as admin: answers may use restricted documents.";
  }
  if (cfg.adminPages) document.getElementById("admin-link").hidden = false;

  document.getElementById("new-thread").addEventListener("click", () => {
    conversation = newId();
    history = [];
    thread.replaceChildren();
    input.focus();
  });

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || button.disabled) return;
    input.value = "";
    button.disabled = true;
    thread.append(el("li", { class: "turn user" }, el("div", { class: "who" }, "You"), el("div", { class: "body" }, text)));
    const body = el("div", { class: "body pending" }, "Looking it up…");
    const turn = el("li", { class: "turn bot", "aria-busy": "true" }, el("div", { class: "who" }, "supportbot"), body);
    thread.append(turn);
    turn.scrollIntoView({ block: "nearest" });
    try {
      const answer = await ask(text, body);
      showAnswer(turn, answer);
      history.push({ speaker: "user", text }, { speaker: "assistant", text: answer.text });
      history = history.slice(-MAX_HISTORY);
    } catch (error) {
      turn.classList.add("failed");
      body.classList.remove("pending");
      body.textContent = error.polite ? error.message : `Sorry, something went wrong: ${error.message}`;
    } finally {
      turn.removeAttribute("aria-busy");
      button.disabled = false;
      input.focus();
    }
  });

  // Ask over Server-Sent Events: "delta" events while the answer is written, then "answer".
  async function ask(text, body) {
    const response = await fetch("/api/ask/stream", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({ text, history, conversation }),
    });
    if (!response.ok || !response.body) {
      let detail = `${response.status} ${response.statusText}`;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      const error = new Error(typeof detail === "string" ? detail : "the question was not accepted");
      error.polite = response.status === 429; // "please try again in about N seconds"
      throw error;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let streamed = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const raw = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message";
        const data = [];
        for (const line of raw.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        const payload = JSON.parse(data.join("\n"));
        if (name === "delta") {
          streamed += payload;
          body.classList.remove("pending");
          body.textContent = streamed;
        } else if (name === "answer") {
          return payload;
        } else if (name === "error") {
          throw new Error(payload);
        }
      }
    }
    throw new Error("the answer stream ended early");
  }

  function showAnswer(turn, answer) {
    const id = answer.id;
    turn.dataset.answerId = id;
    turn.classList.toggle("declined", answer.decision === "declined");
    const srcId = (n) => `src-${id}-${n}`;
    const cite = (n) => el("a", {
      class: "cite", href: `#${srcId(n)}`, "aria-label": `source ${n}`,
      onclick: (e) => { e.preventDefault(); openSource(srcId(n)); },
    }, `[${n}]`);
    const body = el("div", { class: "body" }, renderText(answer.text, cite));
    const parts = [el("div", { class: "who" }, "supportbot"), body];
    if (answer.note) parts.push(el("p", { class: "note" }, answer.note));
    if (answer.citations.length) {
      parts.push(el("div", { class: "sources-title" }, answer.decision === "declined" ? "Closest sources" : "Sources"));
      parts.push(el("ol", { class: "sources" }, answer.citations.map((c) => source(c, srcId(c.number)))));
    }
    if (answer.see_also && answer.see_also.length) {
      parts.push(el("div", { class: "sources-title" }, "See also"));
      parts.push(el("ul", { class: "see-also" }, answer.see_also.map((c) => el("li", {},
        isWebUrl(c.url)
          ? el("a", { href: c.url, target: "_blank", rel: "noopener noreferrer" }, c.title || c.url)
          : c.title || c.doc_id))));
    }
    parts.push(votes(id));
    turn.replaceChildren(...parts);
  }

  function source(c, id) {
    const heading = (c.heading_path || []).filter((h) => h && h !== c.title).join(" › ");
    const snippet = el("blockquote", { class: "snippet", hidden: true }, c.snippet || "");
    const toggle = () => { snippet.hidden = !snippet.hidden; };
    const title = isWebUrl(c.url)
      ? el("a", { class: "source-title", href: c.url, target: "_blank", rel: "noopener noreferrer" }, c.title || c.url)
      : el("button", { type: "button", class: "source-title link", onclick: toggle, "aria-expanded": "false" }, c.title || "untitled");
    if (title.tagName === "BUTTON") title.addEventListener("click", () => title.setAttribute("aria-expanded", String(!snippet.hidden)));
    const meta = [];
    if (heading) meta.push(el("span", { class: "heading" }, heading));
    if (c.updated_at) meta.push(el("span", { class: "age", title: c.updated_at }, `updated ${ago(c.updated_at)}`));
    const more = isWebUrl(c.url) ? el("button", { type: "button", class: "link small", onclick: toggle }, "passage") : null;
    return el("li", { id, class: "source" },
      el("span", { class: "num" }, `[${c.number}]`), " ", title, " ", isWebUrl(c.url) ? hostNote(c.url) : null, " ", more,
      el("div", { class: "meta" }, meta), snippet);
  }

  function openSource(id) {
    const item = document.getElementById(id);
    if (!item) return;
    const snippet = item.querySelector(".snippet");
    if (snippet) snippet.hidden = false;
    item.classList.add("flash");
    setTimeout(() => item.classList.remove("flash"), 1200);
    item.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  function votes(answerId) {
    const status = el("span", { class: "vote-status", role: "status" });
    const make = (vote, label, emoji) => el("button", {
      type: "button", class: `vote vote-${vote}`, "aria-pressed": "false", "aria-label": label, title: label,
      onclick: async (event) => {
        const box = event.currentTarget.parentElement;
        try {
          await api("POST", "/api/feedback", { answer_id: answerId, vote });
          for (const b of box.querySelectorAll("button.vote")) b.setAttribute("aria-pressed", String(b.classList.contains(`vote-${vote}`)));
          status.textContent = vote === "up" ? "Thanks!" : "Thanks — we'll look into it.";
        } catch (error) {
          status.textContent = `Could not record the vote: ${error.message}`;
        }
      },
    }, el("span", { "aria-hidden": "true" }, emoji), ` ${label}`);  // words too: emoji fonts are not everywhere
    return el("div", { class: "votes" },
      make("up", "Helpful", "👍"), make("down", "Not helpful", "👎"), status);
  }
})();
