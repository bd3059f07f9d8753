// API keys (admin): list, create (the key is shown once, with a copy button, and is never
// fetchable again: the queen keeps only its hash), revoke after a confirmation.
// The same routes as `rbee key`: /v1/admin/keys.
import { field, form, input, list, number, on, select, setOptions, table, when } from "./_biz.js";

const page = { id: "keys", title: "API keys", role: "admin" };

/** The one-time panel holding a new key; only the DOM has it, so a reload loses it. */
function shownOnce(ctx, made) {
  const { h } = ctx;
  const value = h("input", { readonly: "", "aria-label": "new API key", class: "biz-secret",
    "data-secret": "" });
  value.value = made.key;
  const copy = on(h("button", { type: "button" }, "Copy"), "click", async () => {
    try {
      await navigator.clipboard.writeText(value.value);
      ctx.toast("Key copied", "ok");
    } catch {
      value.select(); // no clipboard permission (plain http): select it for Ctrl+C
      ctx.toast("Select and copy the key by hand", "warn");
    }
  });
  const panel = h("div", { class: "biz-once card", role: "status", "data-once": "" },
    h("p", {}, h("strong", {}, `Key ${made.id} created. `),
      "Copy it now: it is shown this once and cannot be shown again."),
    value, copy);
  const done = on(h("button", { type: "button" }, "I have copied it"), "click",
    () => panel.remove());
  panel.append(done);
  return panel;
}

/** A revoke button that asks first, inline (keyboard-reachable, no blocking dialog). */
function revoker(ctx, key, refresh) {
  const { h } = ctx;
  const cell = h("span", {});
  const ask = on(h("button", { type: "button", "data-revoke": key.id }, "Revoke"), "click", () => {
    const yes = on(h("button", { type: "button", class: "danger",
      "data-confirm-revoke": key.id }, "Yes, revoke"), "click", async () => {
      try {
        await ctx.api.del(`/v1/admin/keys/${encodeURIComponent(key.id)}`);
        ctx.toast(`Key ${key.id} revoked`, "ok");
      } catch (err) {
        ctx.toast(err.message, "error");
      }
      await refresh();
    });
    const no = on(h("button", { type: "button" }, "Cancel"), "click",
      () => cell.replaceChildren(ask));
    cell.replaceChildren(`Revoke ${key.id}? Requests with it fail at once. `, yes, no);
    yes.focus();
  });
  cell.append(ask);
  return cell;
}

function keyForm(ctx, users, refresh, reveal) {
  const { h } = ctx;
  return form(h, "key", [
    field(h, "User", users),
    field(h, "Name (what it is for)", input(h, "key-name", { maxlength: "64" })),
    field(h, "Role", select(h, "key-role", [["user", "user"], ["operator", "operator"],
      ["admin", "admin"]])),
    field(h, "Models (comma-separated, empty: all)", input(h, "key-models")),
    field(h, "Most urgent priority", select(h, "key-priority", [["interactive", "interactive"],
      ["batch", "batch"]])),
    field(h, "Expires in days (empty: never)", input(h, "key-expires", { inputmode: "decimal" })),
  ], "Create key", async (el) => {
    const f = el.elements;
    const body = { user: users.value, name: f["key-name"].value.trim(), role: f["key-role"].value,
      max_priority: f["key-priority"].value };
    const models = list(f["key-models"].value);
    if (models) body.models = models;
    const days = number(f["key-expires"].value);
    if (days !== null) body.expires_in_days = days;
    const made = await ctx.api.post("/v1/admin/keys", body);
    reveal(shownOnce(ctx, made));
    f["key-name"].value = "";
    await refresh();
  });
}

function render(root, ctx) {
  const { h, api } = ctx;
  const rows = h("div", { "data-list": "keys" });
  const once = h("div", {});
  const users = select(h, "key-user", []);

  async function refresh() {
    try {
      const [{ data: keys }, { data: people }, { data: tenants }] = await Promise.all([
        api.get("/v1/admin/keys"), api.get("/v1/admin/users"), api.get("/v1/admin/tenants")]);
      const tenant = new Map(tenants.map((t) => [t.id, t.name]));
      const person = new Map(people.map((u) => [u.id, u.name]));
      setOptions(h, users, people.map((u) => [u.id, `${u.name} (${tenant.get(u.tenant_id) ?? u.tenant_id})`]));
      rows.replaceChildren(table(h, "keys", [
        ["Id", (k) => h("code", {}, k.id)], ["Name", (k) => k.name],
        ["User", (k) => person.get(k.user_id) ?? k.user_id],
        ["Tenant", (k) => tenant.get(k.tenant_id) ?? k.tenant_id], ["Role", (k) => k.role],
        ["Models", (k) => (k.models ? k.models.join(", ") : "all")],
        ["Priority", (k) => k.max_priority], ["Created", (k) => when(k.created_at)],
        ["Expires", (k) => when(k.expires_at) || "never"],
        ["State", (k) => (k.revoked_at ? `revoked ${when(k.revoked_at)}` : revoker(ctx, k, refresh))],
      ], keys, "No keys yet."));
    } catch (err) {
      rows.replaceChildren(h("p", { class: "biz-error error", role: "alert" }, err.message));
    }
  }
  root.replaceChildren(
    keyForm(ctx, users, refresh, (panel) => once.replaceChildren(panel)), once, rows);
  refresh();
}

export default { ...page, render };
