// Tenants and their users (admin): list, create, and the GDPR consent rule per tenant.
// The same routes as `rbee tenant|user`: /v1/admin/tenants, /v1/admin/users.
import {
  field, form, input, list, on, select, send, setOptions, table, when,
} from "./_biz.js";

const page = { id: "tenants", title: "Tenants & users", role: "admin" };

function consentToggle(ctx, tenant, refresh) {
  const box = ctx.h("input", { type: "checkbox", "aria-label": `${tenant.name} requires consent` });
  box.checked = tenant.requires_consent;
  return on(box, "change", async () => {
    try {
      await send(ctx.api, "PATCH", `/v1/admin/tenants/${encodeURIComponent(tenant.id)}`,
        { requires_consent: box.checked });
      ctx.toast(`${tenant.name}: consent ${box.checked ? "required" : "not required"}`, "ok");
    } catch (err) {
      box.checked = !box.checked;
      ctx.toast(err.message, "error");
    }
    await refresh();
  });
}

function tenantForm(ctx, refresh) {
  const { h } = ctx;
  const consent = input(h, "tenant-consent", { type: "checkbox" });
  return form(h, "tenant", [
    field(h, "Name", input(h, "tenant-name", { required: "", maxlength: "64", autocomplete: "off" })),
    field(h, "Regions (comma-separated, empty: any)", input(h, "tenant-regions")),
    field(h, "Requires consent", consent),
  ], "Create tenant", async (el) => {
    const body = { name: el.elements["tenant-name"].value.trim(),
      requires_consent: consent.checked };
    const regions = list(el.elements["tenant-regions"].value);
    if (regions) body.regions = regions;
    const made = await ctx.api.post("/v1/admin/tenants", body);
    el.reset();
    ctx.toast(`Tenant ${made.name} created`, "ok");
    await refresh();
  });
}

function userForm(ctx, tenants, refresh) {
  const { h } = ctx;
  const tenant = select(h, "user-tenant", []);
  tenants.push(tenant);
  return form(h, "user", [
    field(h, "Tenant", tenant),
    field(h, "Name", input(h, "user-name", { required: "", maxlength: "64", autocomplete: "off" })),
    field(h, "Email (optional)", input(h, "user-email", { type: "email", maxlength: "254" })),
  ], "Create user", async (el) => {
    const body = { tenant: tenant.value, name: el.elements["user-name"].value.trim() };
    const email = el.elements["user-email"].value.trim();
    if (email) body.email = email;
    const made = await ctx.api.post("/v1/admin/users", body);
    el.elements["user-name"].value = "";
    el.elements["user-email"].value = "";
    ctx.toast(`User ${made.name} created: ${made.id}`, "ok");
    await refresh();
  });
}

function render(root, ctx) {
  const { h, api } = ctx;
  const tenantList = h("div", { "data-list": "tenants" });
  const userList = h("div", { "data-list": "users" });
  const tenantSelects = [];
  const filter = select(h, "users-filter", [["", "every tenant"]]);
  let names = new Map();

  async function refresh() {
    try {
      const [{ data: tenants }, { data: users }] = await Promise.all([
        api.get("/v1/admin/tenants"),
        api.get(`/v1/admin/users${filter.value ? `?tenant=${encodeURIComponent(filter.value)}` : ""}`),
      ]);
      names = new Map(tenants.map((t) => [t.id, t.name]));
      const options = tenants.map((t) => [t.id, t.name]);
      tenantSelects.forEach((s) => setOptions(h, s, options));
      setOptions(h, filter, [["", "every tenant"], ...options]);
      tenantList.replaceChildren(table(h, "tenants", [
        ["Name", (t) => t.name], ["Id", (t) => h("code", {}, t.id)],
        ["Regions", (t) => (t.regions ? t.regions.join(", ") : "any")],
        ["Labels", (t) => Object.entries(t.labels).map(([k, v]) => `${k}=${v}`).join(", ")],
        ["Requires consent", (t) => consentToggle(ctx, t, refresh)],
        ["Created", (t) => when(t.created_at)],
      ], tenants, "No tenants yet."));
      userList.replaceChildren(table(h, "users", [
        ["Name", (u) => u.name], ["Id", (u) => h("code", {}, u.id)],
        ["Tenant", (u) => names.get(u.tenant_id) ?? u.tenant_id], ["Email", (u) => u.email ?? ""],
        ["Created", (u) => when(u.created_at)],
      ], users, "No users yet."));
    } catch (err) {
      tenantList.replaceChildren(h("p", { class: "biz-error error", role: "alert" }, err.message));
    }
  }
  on(filter, "change", refresh);
  root.replaceChildren(
    h("h2", {}, "Tenants"), tenantForm(ctx, refresh), tenantList,
    h("h2", {}, "Users"), userForm(ctx, tenantSelects, refresh),
    field(h, "Show users of", filter), userList);
  refresh();
}

export default { ...page, render };
