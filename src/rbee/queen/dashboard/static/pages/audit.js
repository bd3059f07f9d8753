// The audit log (admin): a paged, filtered list, the chain's verification (the verdict and
// the first entry that does not match), and the export as a download.
// The same routes as `rbee audit`: /v1/admin/audit, /verify, /export.
import { field, form, input, on, select, table, when } from "./_biz.js";

const page = { id: "audit", title: "Audit log", role: "admin" };
const PAGE_SIZE = 50;
const OUTCOMES = [["", "any"], ["ok", "ok"], ["error", "error"], ["denied", "denied"],
  ["cancelled", "cancelled"]];

function filtersOf(f, after) {
  const q = new URLSearchParams({ limit: String(PAGE_SIZE), after: String(after) });
  for (const name of ["action", "outcome", "tenant", "subject"]) {
    const v = f.elements[`audit-${name}`].value.trim();
    if (v) q.set(name, v);
  }
  return q;
}

function verdictOf(h, v) {
  const head = `head: entry ${v.head.seq} (${v.head.hash.slice(0, 16)}…)`;
  if (v.ok) {
    return h("div", { class: "biz-verdict card ok", role: "status", "data-verdict": "ok" },
      h("span", { class: "badge up" }, "Chain verified"),
      ` — ${v.entries} entries checked, ${head}`,
      v.archives.length ? `, archives: ${v.archives.join(", ")}` : "");
  }
  const p = v.problem;
  return h("div", { class: "biz-verdict card broken", role: "alert", "data-verdict": "broken" },
    h("span", { class: "badge error" }, "Chain broken"),
    ` — first bad entry: ${p.seq} (${p.kind}): ${p.message}. Last good ${head}`);
}

function render(root, ctx) {
  const { h, api } = ctx;
  const out = h("div", { "data-list": "audit" });
  const verdict = h("div", {});
  const pager = h("nav", { class: "biz-pager", "aria-label": "audit pages" });
  const cursors = [0]; // `after` of each page seen, for Previous
  let filters;

  async function load(after) {
    const { data, next_cursor: next } = await api.get(`/v1/admin/audit?${filtersOf(filters, after)}`);
    out.replaceChildren(table(h, "audit", [
      ["#", (e) => e.seq], ["When (UTC)", (e) => when(e.at)], ["Action", (e) => e.action],
      ["Outcome", (e) => e.outcome], ["Tenant", (e) => e.tenant ?? ""],
      ["Actor", (e) => [e.actor.role, e.actor.key_fingerprint].filter(Boolean).join(" ")],
      ["Subject", (e) => e.subject ?? ""],
      ["Details", (e) => h("code", { class: "biz-json" }, JSON.stringify(e.details))],
    ], data, "No entries match."));
    const prev = on(h("button", { type: "button" }, "Previous"), "click", () => {
      cursors.pop();
      load(cursors[cursors.length - 1]).catch((err) => ctx.toast(err.message, "error"));
    });
    const nextButton = on(h("button", { type: "button" }, "Next"), "click", () => {
      cursors.push(next);
      load(next).catch((err) => ctx.toast(err.message, "error"));
    });
    prev.disabled = cursors.length < 2;
    nextButton.disabled = next == null;
    pager.replaceChildren(prev, ` page ${cursors.length} `, nextButton);
  }

  filters = form(h, "audit", [
    field(h, "Action (prefix)", input(h, "audit-action", { maxlength: "200", placeholder: "e.g. admin." })),
    field(h, "Outcome", select(h, "audit-outcome", OUTCOMES)),
    field(h, "Tenant", input(h, "audit-tenant", { maxlength: "200" })),
    field(h, "Subject", input(h, "audit-subject", { maxlength: "200" })),
  ], "Filter", async () => {
    cursors.splice(1);
    await load(0);
  });
  const verify = form(h, "verify", [], "Verify the chain", async () => {
    verdict.replaceChildren(verdictOf(h, await api.get("/v1/admin/audit/verify")));
  });
  // A plain link: the session cookie authenticates a GET, and the browser streams the file.
  const exportLink = h("a", { href: "/v1/admin/audit/export", download: "rbee-audit.jsonl",
    class: "button", "data-export": "audit" }, "Export (JSON lines)");
  root.replaceChildren(
    h("div", { class: "biz-row" }, verify, exportLink), verdict, filters, out, pager);
  load(0).catch((err) => out.replaceChildren(h("p", { class: "biz-error error", role: "alert" }, err.message)));
}

export default { ...page, render };
