// Small helpers shared by the chat and admin pages. Everything is built with DOM calls and
// textContent: text from the server is never parsed as HTML.
"use strict";

window.sb = (function () {
  function config() {
    const node = document.getElementById("config");
    return node ? JSON.parse(node.textContent || "{}") : {};
  }

  // el("a", {href: "#x", class: "cite"}, "text", otherNode)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "class") node.className = value;
      else if (value === true) node.setAttribute(key, "");
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function ago(iso) {
    if (!iso) return "";
    const then = new Date(iso);
    if (isNaN(then)) return "";
    const s = Math.max(0, (Date.now() - then.getTime()) / 1000);
    const units = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];
    for (const [name, size] of units) {
      const n = Math.floor(s / size);
      if (n >= 1) return `${n} ${name}${n > 1 ? "s" : ""} ago`;
    }
    return "just now";
  }

  function isWebUrl(url) {
    return /^https?:\/\//i.test(url || "");
  }

  // The host a link goes to, shown beside link text that came from a document: "(example.com)".
  // (The server already replaced link text naming another host; see bot/links.py.)
  function hostNote(url) {
    let host = "";
    try { host = new URL(url).host; } catch (e) { host = ""; }
    return host ? el("span", { class: "link-host" }, `(${host})`) : null;
  }

  // Inline markup of the answer text: [n] citations, **bold**, `code`, [text](url) links
  // (only http(s) links become links; any other target shows as its text).
  function inline(text, cite) {
    const out = [];
    const pattern = /\[(\d+)\]|\*\*([^*]+)\*\*|`([^`]+)`|\[([^\]]+)\]\(([^)\s]+)\)/g;
    let last = 0;
    let m;
    while ((m = pattern.exec(text)) !== null) {
      if (m.index > last) out.push(text.slice(last, m.index));
      if (m[1] !== undefined) out.push(cite ? cite(Number(m[1])) : m[0]);
      else if (m[2] !== undefined) out.push(el("strong", {}, m[2]));
      else if (m[3] !== undefined) out.push(el("code", {}, m[3]));
      else if (isWebUrl(m[5])) out.push(el("a", { href: m[5], target: "_blank", rel: "noopener noreferrer" }, m[4]), " ", hostNote(m[5]));
      else out.push(m[4]);
      last = pattern.lastIndex;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }

  // The answer text (a small Markdown subset): paragraphs, "- " / "1. " lists (an item's
  // indented continuation lines stay in it), fenced code blocks as <pre><code>, inline markup.
  function renderText(text, cite) {
    const frag = document.createDocumentFragment();
    const src = String(text || "");
    const fence = /^[ \t]*(```+|~~~+)[^\n]*\n([\s\S]*?)^[ \t]*\1[ \t]*$/gm;
    let at = 0;
    let m;
    while ((m = fence.exec(src)) !== null) {
      prose(src.slice(at, m.index), cite, frag);
      frag.append(el("pre", {}, el("code", {}, dedent(m[2].replace(/\n$/, "")))));
      at = fence.lastIndex;
    }
    prose(src.slice(at), cite, frag);
    return frag;
  }

  function dedent(code) {
    const lines = code.split("\n");
    const indents = lines.filter((l) => l.trim()).map((l) => l.match(/^[ \t]*/)[0].length);
    const cut = indents.length ? Math.min(...indents) : 0;
    return lines.map((l) => l.slice(cut)).join("\n");
  }

  function prose(text, cite, frag) {
    const item = /^\s*([-*]|\d+[.)]) /;
    for (const block of text.split(/\n\s*\n/)) {
      const lines = block.split("\n").filter((l) => l.trim());
      if (!lines.length) continue;
      if (item.test(lines[0]) && lines.every((l) => item.test(l) || /^\s+\S/.test(l))) {
        const ordered = /^\s*\d/.test(lines[0]);
        const items = [];
        for (const l of lines) {
          if (item.test(l)) items.push(el("li", {}, inline(l.replace(item, ""), cite)));
          else items[items.length - 1].append(el("br"), ...inline(l.trim(), cite));
        }
        frag.append(el(ordered ? "ol" : "ul", {}, items));
      } else {
        const p = el("p");
        lines.forEach((l, i) => {
          if (i) p.append(el("br"));
          p.append(...inline(l, cite));
        });
        frag.append(p);
      }
    }
  }

  async function api(method, url, body, csrf) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (csrf) headers["X-CSRF-Token"] = csrf;
    const response = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const detail = data && (data.detail || data.error);
      throw new Error(typeof detail === "string" ? detail : `${response.status} ${response.statusText}`);
    }
    return data;
  }

  return { config, el, ago, isWebUrl, hostNote, renderText, api };
})();
