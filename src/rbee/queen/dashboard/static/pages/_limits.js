// The usage page's admin half: limits per tenant or key, and prices per model.
// The same routes as `rbee quota`: PUT replaces the whole set (an empty field: unlimited).
import { field, form, input, number, on, select, send, setOptions, table } from "./_biz.js";

export const LIMITS = [
  ["requests_per_minute", "Requests / minute"], ["tokens_per_minute", "Tokens / minute"],
  ["tokens_per_day", "Tokens / day"], ["concurrent_requests", "Concurrent requests"],
  ["budget", "Budget (cost units / month)"],
];
export const PRICES = [
  ["input_tokens", "Input token"], ["output_tokens", "Output token"],
  ["audio_seconds", "Audio second"], ["images", "Image"], ["video_seconds", "Video second"],
];

function numbers(h, prefix, names) {
  return names.map(([name, label]) => field(h, label,
    input(h, `${prefix}-${name}`, { inputmode: "decimal", autocomplete: "off" })));
}

/** Fields that are filled, as numbers; a text that is not a number is sent as it is, so
 * the server names the field in its 400. */
function values(el, prefix, names) {
  const body = {};
  for (const [name] of names) {
    const raw = el.elements[`${prefix}-${name}`].value;
    const n = number(raw);
    if (n !== null) body[name] = Number.isNaN(n) ? raw : n;
  }
  return body;
}

function limitsPath(scope, id) {
  return `/v1/admin/${scope === "tenant" ? "tenants" : "keys"}/${encodeURIComponent(id)}/limits`;
}

export function limitsForm(ctx, refresh) {
  const { h } = ctx;
  const scope = select(h, "limits-scope", [["tenant", "tenant"], ["key", "key"]]);
  const target = input(h, "limits-id", { required: "", list: "biz-tenant-names",
    placeholder: "tenant name or id, or key id", autocomplete: "off" });
  const el = form(h, "limits", [field(h, "For a", scope), field(h, "Tenant or key", target),
    ...numbers(h, "limit", LIMITS)], "Set limits", async (f) => {
    const set = await send(ctx.api, "PUT", limitsPath(scope.value, target.value.trim()),
      values(f, "limit", LIMITS));
    ctx.toast(`Limits set for ${set.scope} ${target.value.trim()}`, "ok");
    await refresh();
  });
  // Choosing a target shows what is in force now, to edit rather than retype.
  on(target, "change", async () => {
    try {
      const now = await ctx.api.get(limitsPath(scope.value, target.value.trim()));
      for (const [name] of LIMITS) el.elements[`limit-${name}`].value = now[name] ?? "";
    } catch { /* an unknown name: the submit says so */ }
    el.dataset.shown = target.value; // what the fields now hold (tests wait on it)
  });
  return el;
}

export function pricesForm(ctx, refresh) {
  const { h } = ctx;
  return form(h, "prices", [
    field(h, "Model", input(h, "price-model", { required: "", maxlength: "512" })),
    ...numbers(h, "price", PRICES)], "Set prices", async (f) => {
    const model = f.elements["price-model"].value.trim();
    const set = await send(ctx.api, "PUT", `/v1/admin/prices/${encodeURIComponent(model)}`,
      values(f, "price", PRICES));
    ctx.toast(`Prices set for ${set.model}`, "ok");
    await refresh();
  });
}

/** The limits and prices in force, as tables (prices with a delete button). */
export async function limitsTables(ctx, tenants, refresh) {
  const { h, api } = ctx;
  const [{ data: limits }, { data: prices }] = await Promise.all([
    api.get("/v1/admin/limits"), api.get("/v1/admin/prices")]);
  const name = (l) => (l.scope === "tenant" ? tenants.get(l.id) ?? l.id : l.id);
  const unlimited = (v) => (v == null ? "—" : v);
  const remove = (p) => on(h("button", { type: "button", "data-price-delete": p.model },
    "Delete"), "click", async () => {
    try {
      await api.del(`/v1/admin/prices/${encodeURIComponent(p.model)}`);
    } catch (err) {
      ctx.toast(err.message, "error");
    }
    await refresh();
  });
  return [
    h("h3", {}, "Limits in force"),
    table(h, "limits", [["Scope", (l) => l.scope], ["For", name],
      ...LIMITS.map(([k, label]) => [label, (l) => unlimited(l[k])])], limits, "No limits set."),
    h("h3", {}, "Prices in force"),
    table(h, "prices", [["Model", (p) => p.model],
      ...PRICES.map(([k, label]) => [label, (p) => p[k]]), ["", remove]], prices,
    "No prices: every model costs 0."),
  ];
}

/** A <datalist> of tenant names for the limits form's target field. */
export function tenantNames(h, tenants) {
  const el = h("datalist", { id: "biz-tenant-names" });
  setOptions(h, el, [...tenants.values()].map((n) => [n, n]));
  return el;
}
