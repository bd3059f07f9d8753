// The scheduler: edit a Lua script (highlighted), check it, dry-run it against the live
// cluster (the decision and why each candidate was rejected), apply it, see its versions
// and roll back; the policy's counters and errors. Reads and dry runs are an operator's;
// apply and rollback are an admin's (the queen's operation roles), so only admins see them.
import { clear } from "../dom.js";
import { editor } from "./lab/lua.js";
import { renderDecision } from "./lab/explain.js";
import { jobResult } from "./lab/job.js";
import { useStyles } from "./lab/styles.js";

const STARTER = `-- route(job, workers) picks a running worker; place(model, devices) a device.
-- Return nil for "no opinion" (the built-in policy decides), false to refuse them all.
function route(job, workers)
  return workers:with_model(job.model):least_loaded()
end
`;

export default {
  id: "scheduler",
  title: "Scheduler",
  role: "operator",
  render(root, ctx) {
    useStyles();
    const { api, h, toast, session } = ctx;
    const admin = session.role === "admin";
    const state = h("div", { "data-testid": "scheduler-state" }, "Loading…");
    const checkOut = h("p", { "data-testid": "check-result", role: "status" });
    const planOut = h("div", { "data-testid": "plan" });
    const historyOut = h("div", { "data-testid": "history" });
    const scriptsList = h("select", { "aria-label": "Saved scripts", "data-testid": "scripts" });
    const name = h("input", { value: "my-policy", maxlength: 64, pattern: "[A-Za-z0-9_.\\-]{1,64}",
                              "aria-label": "Script name", "data-testid": "script-name" });
    const model = h("input", { value: "", placeholder: "default model", maxlength: 512,
                               "aria-label": "Model to dry-run", "data-testid": "plan-model" });
    const tenant = h("input", { value: "", placeholder: "(none)", maxlength: 128,
                                "aria-label": "Tenant", "data-testid": "plan-tenant" });
    const code = editor(h, { value: STARTER, onInput: () => { checkOut.textContent = ""; } });
    const busy = (button, work) => async () => {
      button.disabled = true;
      try { await work(); } catch (err) { toast(err.message, "error"); } finally { button.disabled = false; }
    };

    async function refreshState() {
      const s = await api.get("/v1/scheduler");
      clear(state);
      const sc = s.script;
      state.append(...[
        h("p", {}, `routing ${s.routing_policy} · placement ${s.placement_policy} · active script: `,
          h("strong", { "data-testid": "active-script" }, sc ? sc.name : "none")),
        sc ? h("p", { "data-testid": "counters" },
          `${sc.calls} calls · ${sc.failures} failures (${sc.failures_in_a_row} in a row) · `
          + `${sc.fallbacks} no opinion · ${sc.busy} busy`) : null,
        sc && sc.last_error ? h("p", { class: "error" }, `last error: ${sc.last_error}`) : null,
        sc && sc.disabled ? h("p", { class: "error" }, `disabled: ${sc.disabled}`) : null,
      ].filter(Boolean)); // Element.append would write a null as the text "null"
    }

    async function refreshScripts(select) {
      const { scripts } = await jobResult(api, { operation: "script_list" });
      clear(scriptsList);
      scriptsList.append(h("option", { value: "" }, scripts.length ? "— open a saved script —" : "no saved scripts"));
      for (const s of scripts) {
        scriptsList.append(h("option", { value: s.name, selected: s.name === select },
          `${s.name} v${s.version}${s.active ? " (active)" : ""}`));
      }
    }

    async function refreshHistory() {
      clear(historyOut);
      let hist;
      try {
        hist = await jobResult(api, { operation: "script_history", name: name.value });
      } catch (err) {
        if (err.code === "script_not_found") {
          historyOut.append(h("p", { class: "muted" }, "Not saved yet: no history."));
          return;
        }
        throw err;
      }
      historyOut.append(h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["version", "saved", "by", "lines", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, hist.versions.map((v) => h("tr", { "data-version": v.version },
          h("td", {}, `v${v.version}`, v.in_force ? h("span", { class: "badge done" }, hist.active ? "active" : "in force") : null),
          h("td", {}, new Date(v.saved_at * 1000).toLocaleString()),
          h("td", {}, v.saved_by), h("td", {}, String(v.lines)),
          h("td", {}, h("span", { class: "actions" },
            h("button", { type: "button", onclick: () => view(v.version) }, "View"),
            admin && !(v.in_force && hist.active) ? h("button", {
              type: "button", class: "danger", "data-testid": `rollback-${v.version}`,
              onclick: (e) => busy(e.currentTarget, () => rollback(v.version))(),
            }, `Roll back to v${v.version}`) : null))))))));
    }

    async function open(scriptName) {
      const s = await jobResult(api, { operation: "script_get", name: scriptName });
      name.value = s.name;
      code.value = s.source;
      await refreshHistory();
    }

    async function view(version) {
      const s = await jobResult(api, { operation: "script_get", name: name.value, version });
      code.value = s.source;
      toast(`v${version} loaded into the editor (apply saves it as a new version)`);
    }

    async function rollback(version) {
      const s = await jobResult(api, { operation: "script_rollback", name: name.value, version });
      code.value = s.source;
      toast(`${s.name} v${s.version} is active again`, "ok");
      await Promise.all([refreshState(), refreshHistory(), refreshScripts(s.name)]);
    }

    async function check() {
      const r = await api.post("/v1/scheduler/check", { source: code.value, name: name.value });
      checkOut.className = r.ok ? "ok" : "error";
      checkOut.textContent = r.ok ? `compiles · hooks: ${r.hooks.join(", ")}`
        : `${r.line ? `line ${r.line}: ` : ""}${r.message}`;
      code.markError(r.ok ? null : r.line);
      return r.ok;
    }

    async function dryRun() {
      if (!(await check())) return;
      const body = { source: code.value };
      if (model.value) body.model = model.value;
      if (tenant.value) body.tenant = tenant.value;
      const plan = await api.post("/v1/scheduler/explain", body);
      clear(planOut);
      planOut.append(renderDecision(h, plan));
    }

    async function apply() {
      if (!(await check())) return;
      const s = await jobResult(api, { operation: "script_save", name: name.value,
                                    source: code.value, activate: true });
      toast(`${s.name} v${s.version} applied`, "ok");
      await Promise.all([refreshState(), refreshHistory(), refreshScripts(s.name)]);
    }

    async function off() {
      await jobResult(api, { operation: "script_activate", name: null });
      toast("built-in policy in force", "ok");
      await Promise.all([refreshState(), refreshHistory(), refreshScripts(name.value)]);
    }

    const button = (label, work, attrs = {}) => {
      const b = h("button", { type: "button", ...attrs }, label);
      b.addEventListener("click", busy(b, work));
      return b;
    };
    scriptsList.addEventListener("change", () => {
      if (scriptsList.value) open(scriptsList.value).catch((err) => toast(err.message, "error"));
    });

    root.append(
      h("section", { class: "card" }, h("h2", {}, "Policy in force"), state,
        h("div", { class: "actions" }, button("Refresh", refreshState),
          admin ? button("Turn the script off", off, { "data-testid": "script-off" }) : null)),
      h("section", { class: "card" }, h("h2", {}, "Script"),
        h("div", { class: "actions" }, scriptsList,
          h("label", {}, "Name", name)),
        code.element,
        h("div", { class: "actions" },
          button("Check", check, { "data-testid": "check" }),
          h("label", {}, "Model", model), h("label", {}, "Tenant", tenant),
          button("Dry run", dryRun, { "data-testid": "dry-run" }),
          admin ? button("Apply", apply, { class: "primary", "data-testid": "apply" }) : null),
        checkOut),
      h("section", { class: "card" }, h("h2", {}, "Dry run"), planOut,
        h("p", { class: "muted" }, "A dry run decides on the live cluster with this editor's "
          + "script and changes nothing.")),
      h("section", { class: "card" }, h("h2", {}, "History"), historyOut,
        h("div", { class: "actions" }, button("Load history", refreshHistory))));
    Promise.all([refreshState(), refreshScripts()]).catch((err) => toast(err.message, "error"));
  },
};
