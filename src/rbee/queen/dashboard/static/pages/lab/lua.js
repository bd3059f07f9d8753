// Lua 5.4 syntax highlighting for the scheduler's script editor: a tokenizer of ~40 lines
// over a textarea, rather than a vendored highlighter. The editor needs five token kinds
// (keywords, strings, comments, numbers, the script's hooks and helpers); Prism's core and
// its Lua grammar would be ~25 KB of someone else's code and a licence to carry for that.
// Tokens become text nodes inside <span>s (never innerHTML): a script's text cannot run.

const KEYWORDS = new Set(("and break do else elseif end false for function goto if in local "
  + "nil not or repeat return then true until while").split(" "));
// rbee's helper vocabulary (docs/scheduler.md): marked so a reader sees what rbee provides.
const BUILTINS = new Set(("route place log gpu_vram_free filter with_model on_hive in_region "
  + "with_label idle ready kind fits sort_by least_loaded most_vram_free first count empty ids "
  + "pairs ipairs next select type tostring tonumber error assert pcall math string table "
  + "utf8").split(" "));

const RULES = [
  ["comment", /--\[(=*)\[[\s\S]*?(?:\]\1\]|$)/y],
  ["comment", /--[^\n]*/y],
  ["string", /\[(=*)\[[\s\S]*?(?:\]\1\]|$)/y],
  ["string", /"(?:[^"\\\n]|\\[\s\S])*(?:"|(?=\n)|$)/y], // unclosed: up to the line's end
  ["string", /'(?:[^'\\\n]|\\[\s\S])*(?:'|(?=\n)|$)/y],
  ["number", /0[xX][0-9a-fA-F.]+(?:[pP][+-]?\d+)?|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?/y],
  ["name", /[A-Za-z_][A-Za-z0-9_]*/y],
  ["space", /\s+/y],
  ["punct", /[^\sA-Za-z0-9_"'\-[]+|[-[]/y],
  ["punct", /[\s\S]/y], // anything else, one character: the loop always moves on
];

// [kind, text] pairs covering `source` exactly (their texts concatenate to it).
export function tokenize(source) {
  const out = [];
  let at = 0;
  while (at < source.length) {
    for (const [kind, re] of RULES) {
      re.lastIndex = at;
      const m = re.exec(source);
      if (!m || !m[0].length) continue;
      let k = kind;
      if (kind === "name") k = KEYWORDS.has(m[0]) ? "keyword" : BUILTINS.has(m[0]) ? "builtin" : "name";
      out.push([k, m[0]]);
      at += m[0].length;
      break;
    }
  }
  return out;
}

// Fill `pre` with the highlighted source; `errorLine` (1-based) is marked.
export function paint(pre, source, h, errorLine) {
  while (pre.firstChild) pre.removeChild(pre.firstChild);
  const lines = [[]];
  for (const [kind, text] of tokenize(source)) {
    const parts = text.split("\n");
    parts.forEach((part, i) => {
      if (i > 0) lines.push([]);
      if (part) lines[lines.length - 1].push(kind === "space" || kind === "punct" || kind === "name"
        ? document.createTextNode(part) : h("span", { class: `tok-${kind}` }, part));
    });
  }
  lines.forEach((nodes, i) => {
    const line = h("span", { class: i + 1 === errorLine ? "line error-line" : "line",
                             "data-line": i + 1 }, nodes);
    pre.appendChild(line);
    pre.appendChild(document.createTextNode("\n"));
  });
}

// A textarea over a highlighted <pre>: the textarea's text is transparent, its caret not.
export function editor(h, { value = "", label = "Lua script", onInput } = {}) {
  const pre = h("pre", { class: "code-paint", "aria-hidden": "true" });
  const area = h("textarea", { class: "code-input", spellcheck: false, autocapitalize: "off",
                               autocomplete: "off", wrap: "off", "aria-label": label,
                               "data-testid": "script-editor" });
  area.value = value;
  let errorLine = null;
  const repaint = () => paint(pre, area.value, h, errorLine);
  area.addEventListener("input", () => { errorLine = null; repaint(); if (onInput) onInput(); });
  area.addEventListener("scroll", () => { pre.scrollTop = area.scrollTop; pre.scrollLeft = area.scrollLeft; });
  area.addEventListener("keydown", (e) => {
    if (e.key !== "Tab" || e.shiftKey || e.ctrlKey || e.metaKey) return; // Esc+Tab leaves
    e.preventDefault(); // two spaces, as Lua is usually indented
    area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end");
    repaint();
  });
  repaint();
  return {
    element: h("div", { class: "code-editor" }, pre, area),
    textarea: area,
    get value() { return area.value; },
    set value(v) { area.value = v; errorLine = null; repaint(); },
    markError(line) { errorLine = line; repaint(); },
  };
}
