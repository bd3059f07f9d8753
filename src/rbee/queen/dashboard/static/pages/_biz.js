// Shared pieces of the business pages (tenants, keys, usage, audit, gdpr).
// Every value from the server goes into the DOM as text (ctx.h children, textContent,
// input.value), never as HTML: tenant names and audit fields are attacker-controlled.

const RANKS = { user: 0, operator: 1, admin: 2 };

/** Whether a session's role may open a page needing `role`. */
export function permits(session, role) {
  return (RANKS[session && session.role] ?? -1) >= RANKS[role];
}

/** Listen on an element (ctx.h builds it; handlers are attached here, one way for all). */
export function on(el, event, handler) {
  el.addEventListener(event, handler);
  return el;
}

/** A labelled input; `attrs` go to the <input>/<select>. */
export function field(h, label, control) {
  return h("label", { class: "biz-field" }, h("span", {}, label), control);
}

export function input(h, name, attrs = {}) {
  return h("input", { name, id: `biz-${name}`, ...attrs });
}

export function select(h, name, options, attrs = {}) {
  const el = h("select", { name, id: `biz-${name}`, ...attrs });
  setOptions(h, el, options);
  return el;
}

/** Replace a <select>'s options with [value, label] pairs, keeping the choice if present. */
export function setOptions(h, el, options) {
  const kept = el.value;
  el.replaceChildren(...options.map(([value, label]) => h("option", { value }, label)));
  if (options.some(([value]) => value === kept)) el.value = kept;
}

/**
 * A form whose submit runs `action(form)`; the server's error envelope message (the
 * Error ctx.api throws) shows in the form's alert line, and a success clears it.
 */
export function form(h, name, children, submitLabel, action) {
  const error = h("p", { class: "biz-error error", role: "alert", "data-error": name });
  const button = h("button", { type: "submit", class: "primary" }, submitLabel);
  const el = h("form", { class: "biz-form actions", "data-form": name }, ...children, button, error);
  on(el, "submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    button.disabled = true;
    try {
      await action(el);
    } catch (err) {
      error.textContent = err instanceof Error ? err.message : String(err);
    } finally {
      button.disabled = false;
    }
  });
  return el;
}

/** A table of rows; `columns` are [heading, row => text or Node]. Scrolls on a phone. */
export function table(h, name, columns, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p", { class: "biz-empty", "data-table": name }, empty);
  const head = h("tr", {}, ...columns.map(([title]) => h("th", { scope: "col" }, title)));
  const body = rows.map((row) => h("tr", {}, ...columns.map(([, cell]) => {
    const value = cell(row);
    return h("td", {}, value instanceof Node ? value : String(value ?? ""));
  })));
  return h("div", { class: "biz-scroll table-wrap" },
    h("table", { class: "biz-table", "data-table": name }, h("thead", {}, head),
      h("tbody", {}, ...body)));
}

export function when(seconds) {
  return seconds == null ? "" : new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19);
}

/** Comma-separated text to a list (empty: null, "leave it out"). */
export function list(text) {
  const items = text.split(",").map((s) => s.trim()).filter(Boolean);
  return items.length ? items : null;
}

/** A number field's value: "" is null (unlimited), anything else a number. */
export function number(text) {
  const t = text.trim();
  return t === "" ? null : Number(t);
}

/** PUT or PATCH (limits, prices, a tenant's consent rule) through the shell's api. */
export function send(api, method, path, body) {
  return api[method.toLowerCase()](path, body);
}

/** Offer `text` as a file download (a Blob URL, revoked once clicked). */
export function download(name, text, type = "application/json") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
