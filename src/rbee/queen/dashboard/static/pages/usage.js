// Usage with charts for every key (a user key sees its own tenant's: the API decides), and
// for admins the limits and prices that meter it. Routes: /v1/usage, /v1/admin/limits|prices.
import { barChart, totals } from "./_charts.js";
import { field, form, input, on, permits, select, setOptions, table } from "./_biz.js";
import { limitsForm, limitsTables, pricesForm, tenantNames } from "./_limits.js";

const GROUPS = { day: (r) => r.day, model: (r) => r.model, key: (r) => r.key_id,
  tenant: (r) => r.tenant_id };
const METRICS = {
  tokens: [(r) => r.prompt_tokens + r.completion_tokens, "tokens"],
  requests: [(r) => r.requests, "requests"],
  cost: [(r) => r.cost, "cost units"],
};

function query(f, admin) {
  const q = new URLSearchParams();
  for (const name of ["since", "until", "model"]) {
    const v = f.elements[`usage-${name}`].value.trim();
    if (v) q.set(name, v);
  }
  if (admin && f.elements["usage-tenant"].value) q.set("tenant", f.elements["usage-tenant"].value);
  return q.toString();
}

function chartOf(ctx, rows, group, metric, tenants) {
  const { h } = ctx;
  const [value, unit] = METRICS[metric];
  const label = group === "tenant" ? (r) => tenants.get(r.tenant_id) ?? r.tenant_id : GROUPS[group];
  const items = totals(rows, label, value, group === "day");
  return h("figure", { class: "biz-figure", "data-chart": `${metric}-by-${group}` },
    barChart(items, { title: `${metric} by ${group}`, unit }),
    h("figcaption", {}, `${unit} by ${group}, ${rows.length} usage rows`));
}

function render(root, ctx) {
  const { h, api, session } = ctx;
  const admin = permits(session, "admin");
  const seesAll = permits(session, "operator");
  const out = h("div", { "data-usage": "" });
  const adminOut = h("div", {});
  const tenantSelect = select(h, "usage-tenant", [["", "every tenant"]]);
  let tenants = new Map();
  let rows = [];

  const group = select(h, "usage-group", Object.keys(GROUPS).map((g) => [g, `per ${g}`]));
  const metric = select(h, "usage-metric", Object.keys(METRICS).map((m) => [m, m]));
  const draw = () => {
    if (!rows.length) {
      out.replaceChildren(h("p", { class: "biz-empty" }, "No usage in this range yet."));
      return;
    }
    out.replaceChildren(chartOf(ctx, rows, group.value, metric.value, tenants),
      table(h, "usage", [["Day", (r) => r.day], ["Tenant", (r) => tenants.get(r.tenant_id) ?? r.tenant_id],
        ["Key", (r) => r.key_id], ["Model", (r) => r.model], ["Requests", (r) => r.requests],
        ["Prompt tokens", (r) => r.prompt_tokens], ["Completion tokens", (r) => r.completion_tokens],
        ["Cost", (r) => r.cost]], rows));
  };
  on(group, "change", draw);
  on(metric, "change", draw);

  const filters = form(h, "usage", [
    field(h, "Since (YYYY-MM-DD)", input(h, "usage-since", { placeholder: "YYYY-MM-DD", maxlength: "10" })),
    field(h, "Until (YYYY-MM-DD)", input(h, "usage-until", { placeholder: "YYYY-MM-DD", maxlength: "10" })),
    field(h, "Model", input(h, "usage-model", { maxlength: "512" })),
    ...(seesAll ? [field(h, "Tenant", tenantSelect)] : []),
  ], "Show usage", async (f) => {
    const q = query(f, seesAll);
    rows = (await api.get(`/v1/usage${q ? `?${q}` : ""}`)).data;
    draw();
  });

  async function refreshAdmin() {
    if (!admin) return;
    try {
      const { data } = await api.get("/v1/admin/tenants");
      tenants = new Map(data.map((t) => [t.id, t.name]));
      setOptions(h, tenantSelect, [["", "every tenant"], ...data.map((t) => [t.id, t.name])]);
      adminOut.replaceChildren(tenantNames(h, tenants), ...await limitsTables(ctx, tenants, refreshAdmin));
    } catch (err) {
      adminOut.replaceChildren(h("p", { class: "biz-error error", role: "alert" }, err.message));
    }
  }

  root.replaceChildren(h("h2", {}, "Usage"), filters,
    h("div", { class: "biz-row" }, field(h, "Chart", metric), field(h, "Grouped", group)), out,
    ...(admin ? [h("h2", {}, "Limits"), limitsForm(ctx, refreshAdmin),
      h("h2", {}, "Prices"), pricesForm(ctx, refreshAdmin), adminOut] : []));
  refreshAdmin().then(() => filters.requestSubmit());
}

export default { id: "usage", title: "Usage & quotas", role: "user", render };
