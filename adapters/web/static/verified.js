// The admin page's verified answers: who answered, when, how often the answer was cited; edit the
// text, set the review date (expire) or remove one.
"use strict";

(function () {
  const { config, el, ago, renderText, api } = window.sb;
  const cfg = config();
  const body = document.querySelector("#verified tbody");
  if (!body) return;
  const change = (method, url, data) => api(method, url, data === undefined ? {} : data, cfg.csrf);

  function row(v) {
    const url = `/api/admin/verified/${encodeURIComponent(v.id)}`;
    const status = el("span", { class: "verified-status", role: "status" });
    const text = el("div", { class: "answer-text" }, renderText(v.text));
    const editor = el("textarea", { class: "verified-edit", rows: 6, hidden: true, "aria-label": "Answer text" });
    editor.value = v.text;
    const review = el("input", { type: "date", class: "verified-review", "aria-label": "Review date",
      value: v.review_by ? v.review_by.slice(0, 10) : "" });
    const by = v.url && /^https?:\/\//.test(v.url) ? el("a", { href: v.url, rel: "noopener noreferrer" }, `@${v.author_name}`) : `@${v.author_name}`;
    async function run(work, done) {
      try { await work(); status.textContent = done; load(); }
      catch (error) { status.textContent = `Failed: ${error.message}`; }
    }
    const edit = el("button", { type: "button", class: "edit", onclick: () => {
      if (editor.hidden) { editor.hidden = false; text.hidden = true; edit.textContent = "Save"; return; }
      run(() => change("PATCH", url, { text: editor.value }), "Saved");
    } }, "Edit");
    const setReview = el("button", { type: "button", class: "set-review", onclick: () =>
      run(() => change("PATCH", url, review.value ? { review_by: `${review.value}T00:00:00+00:00` } : { clear_review: true }), "Review date set") }, "Set");
    const expire = el("button", { type: "button", class: "expire", onclick: () => run(() => change("POST", `${url}/expire`), "Expired") }, "Expire now");
    const remove = el("button", { type: "button", class: "remove link", onclick: () => {
      if (confirm("Remove this verified answer from the knowledge base?")) run(() => change("DELETE", url, undefined), "Removed");
    } }, "Remove");
    return el("tr", { class: `verified st-${v.status}`, "data-verified-id": v.id },
      el("td", {}, el("strong", {}, v.question),
        v.paraphrases.length ? el("div", { class: "meta" }, `also asked: ${v.paraphrases.slice(0, 3).join(" · ")}`) : null,
        el("div", { class: "meta" }, `${v.platform} · visible to ${v.groups.join(", ")}`)),
      el("td", {}, text, editor),
      el("td", {}, by),
      el("td", { title: v.created_at }, ago(v.created_at)),
      el("td", { class: "uses" }, String(v.uses)),
      el("td", {}, el("span", { class: `status st-${v.status}` }, v.status), " ", review, setReview),
      el("td", {}, edit, expire, remove, status));
  }

  async function load() {
    try {
      const data = await api("GET", "/api/admin/verified");
      body.replaceChildren(...(data.verified.length ? data.verified.map(row)
        : [el("tr", {}, el("td", { colspan: 7, class: "hint" }, "No verified answers yet."))]));
    } catch (error) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "error" }, `Could not load: ${error.message}`)));
    }
  }

  load();
})();
