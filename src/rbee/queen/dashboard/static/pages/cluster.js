// Cluster at a glance, live (pushed over /ui/events; this page never polls): every hive,
// its devices with memory bars, its workers. Operators also act here: spawn a model on a
// chosen device (pinning), stop a worker, keep one warm, start/stop/install/uninstall a hive.
import { bytes, clear, seconds } from "../dom.js";
import { runJob } from "../jobrun.js";

const RANK = { user: 0, operator: 1, admin: 2 };

export default {
  id: "cluster",
  title: "Cluster",
  role: "user",
  render(root, ctx) {
    const { cluster, h, session } = ctx;
    const operator = RANK[session.role] >= RANK.operator;
    const admin = RANK[session.role] >= RANK.admin;
    const summary = h("p", { class: "muted", id: "cluster-summary" }, "Waiting for the queen…");
    const list = h("div", { class: "hives" });
    const panel = h("section", { class: "card", id: "action-panel", hidden: true },
      h("h2", { id: "action-title" }, ""), h("div", { class: "log", id: "action-log", tabindex: "0" }));
    root.append(summary, panel, list);
    const act = { ctx, panel, operator, admin };
    // Forms being typed into survive a push: rows are rebuilt, open forms are kept by key.
    const forms = new Map();
    return cluster.subscribe((state) => {
      const workers = state.hives.flatMap((x) => x.devices.flatMap((d) => d.workers));
      summary.textContent = `${state.hives.length} hive(s), `
        + `${state.hives.filter((x) => x.state === "up").length} up, ${workers.length} worker(s)`;
      const focused = document.activeElement && document.activeElement.id;
      clear(list);
      if (!state.hives.length) list.appendChild(h("p", { class: "muted" }, "No hives yet."));
      for (const hive of state.hives) list.appendChild(hiveCard(act, hive, forms));
      if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
    });
  },
};

function hiveCard(act, hive, forms) {
  const { h } = act.ctx;
  const buttons = [];
  if (act.operator) {
    const op = (operation, label, cls) => h("button", {
      type: "button", class: cls || "", "data-action": operation,
      onclick: () => hiveJob(act, operation, hive.id, label) }, label);
    if (hive.state === "up") buttons.push(op("hive_stop", `Stop ${hive.id}`, "danger"));
    else if (hive.remote) buttons.push(op("hive_start", `Start ${hive.id}`));
    if (act.admin && hive.remote) {
      buttons.push(op("hive_install", `Install ${hive.id}`));
      buttons.push(op("hive_uninstall", `Uninstall ${hive.id}`, "danger"));
    }
  }
  return h("article", { class: `hive state-${hive.state}`, "data-hive": hive.id },
    h("header", {},
      h("h2", {}, hive.id),
      h("span", { class: `badge ${hive.state}`, "data-state": hive.state }, hive.state),
      hive.region ? h("span", { class: "tag" }, `region ${hive.region}`) : null,
      Object.entries(hive.labels || {}).map(([k, v]) => h("span", { class: "tag" }, `${k}=${v}`)),
      h("span", { class: "muted" }, hive.last_report_s === null
        ? "never reported" : `last report ${seconds(hive.last_report_s)} ago`),
      hive.version ? h("span", { class: "muted" }, `v${hive.version}`) : null),
    buttons.length ? h("div", { class: "actions" }, buttons) : null,
    hive.devices.map((d) => deviceRow(act, hive, d, forms)));
}

function deviceRow(act, hive, d, forms) {
  const { h } = act.ctx;
  const total = d.memory_total || 0;
  const used = Math.max(0, total - (d.memory_free || 0));
  const reserved = Math.min(d.reserved || 0, used);
  const pct = (n) => (total ? `${(100 * n) / total}%` : "0%");
  const extra = [];
  if (d.utilization !== undefined && d.utilization !== null) extra.push(`utilisation ${d.utilization}%`);
  if (d.temperature !== undefined && d.temperature !== null) extra.push(`${d.temperature} °C`);
  if (d.power !== undefined && d.power !== null) extra.push(`${d.power} W`);
  return h("section", { class: "device", "data-device": d.id },
    h("h3", {}, `${d.id} · ${d.name}`),
    total ? h("div", { class: "bar", role: "img",
                       "aria-label": `${bytes(used)} of ${bytes(total)} used, ${bytes(d.reserved)} by rbee` },
      h("span", { class: "reserved", style: { width: pct(reserved) } }),
      h("span", { class: "used", style: { width: pct(used - reserved) } })) : null,
    total ? h("div", { class: "legend" },
      h("span", {}, h("i", { class: "reserved" }), `reserved by rbee ${bytes(d.reserved)}`),
      h("span", {}, h("i", { class: "used" }), `used ${bytes(used)}`),
      h("span", {}, h("i", { class: "free" }), `free ${bytes(d.memory_free)} of ${bytes(total)}`),
      extra.map((x) => h("span", {}, x))) : null,
    d.workers.map((w) => workerRow(act, w)),
    act.operator && hive.state === "up" ? spawnForm(act, hive, d, forms) : null);
}

function workerRow(act, w) {
  const { h } = act.ctx;
  const items = [
    h("strong", {}, w.model),
    h("span", { class: "muted" }, `${w.kind} · ${w.engine}`),
    h("span", { class: `badge ${w.state}`, "data-state": w.state }, w.state),
    h("span", {}, `${w.inflight}/${w.slots} in flight`),
  ];
  if (w.state === "loading" || w.state === "starting") {
    items.push(h("progress", { max: 1, value: w.progress, "aria-label": `loading ${w.model}` }));
  }
  if (w.memory_bytes) items.push(h("span", { class: "muted" }, bytes(w.memory_bytes)));
  if (w.tokens_per_s !== null && w.tokens_per_s !== undefined) {
    items.push(h("span", { class: "muted", "data-tokens-per-s": String(w.tokens_per_s) },
                 `${w.tokens_per_s} tokens/s`));
  }
  if (w.keep_warm) items.push(h("span", { class: "tag" }, "kept warm"));
  else if (w.unload_in_s !== null) {
    items.push(h("span", { class: "muted" }, `idle ${seconds(w.idle_s)}, unloads in ${seconds(w.unload_in_s)}`));
  }
  if (w.stage && w.state !== "ready") items.push(h("span", { class: "muted" }, w.stage));
  if (w.error) items.push(h("span", { class: "error" }, w.error));
  if (act.operator && w.state !== "stopping") {
    items.push(h("button", { type: "button", "data-action": "keep_warm",
      onclick: () => keepWarm(act, w, !w.keep_warm) }, w.keep_warm ? "Let it unload" : "Keep warm"));
    items.push(h("button", { type: "button", class: "danger", "data-action": "worker_stop",
      onclick: () => workerStop(act, w) }, `Stop ${w.model}`));
  }
  return h("div", { class: "worker", "data-worker": w.id, "data-model": w.model }, items);
}

function spawnForm(act, hive, d, forms) {
  const { h } = act.ctx;
  const key = `${hive.id}/${d.id}`;
  const id = `spawn-${key.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  let model = forms.get(key);
  if (!model) {
    model = h("input", { id, name: "model", required: true, maxlength: 512,
                         placeholder: "model, e.g. smollm2-135m-instruct", autocomplete: "off" });
    forms.set(key, model);
  }
  const submit = async (event) => {
    event.preventDefault();
    if (!model.value.trim()) return;
    await track(act, `Spawn ${model.value} on ${key}`, {
      operation: "worker_spawn", model: model.value.trim(), hive_id: hive.id,
      device: d.id, placement: "pin" });
  };
  return h("form", { class: "actions", "data-spawn": key, onsubmit: submit },
    h("label", { for: id }, `Model to run on ${d.id}`, model),
    h("button", { type: "submit", class: "primary" }, `Spawn on ${d.id}`));
}

async function track(act, title, body) {
  const { api, toast, h } = act.ctx;
  const log = act.panel.querySelector("#action-log");
  act.panel.hidden = false;
  act.panel.querySelector("#action-title").textContent = title;
  log.replaceChildren();
  try {
    const { job_id, done } = await runJob(api, body, log);
    log.prepend(h("div", { class: "muted" }, `job ${job_id}`));
    const end = await done;
    if (end && end.event === "done") toast(`${title}: done`, "ok");
    else if (end) toast(`${title}: ${end.event}${end.data && end.data.message ? ` — ${end.data.message}` : ""}`, "error");
  } catch (err) {
    log.appendChild(h("div", { class: "error" }, err.message));
    toast(err.message, "error");
  }
}

function hiveJob(act, operation, hive, label) {
  return track(act, label, { operation, hive_id: hive });
}

function workerStop(act, w) {
  return track(act, `Stop ${w.model} (${w.id})`, { operation: "worker_stop", worker_id: w.id });
}

async function keepWarm(act, w, on) {
  try {
    await act.ctx.api.post(`/v1/workers/${encodeURIComponent(w.id)}/keep-warm`, { keep_warm: on });
    act.ctx.toast(on ? `${w.model} stays loaded` : `${w.model} may unload when idle`, "ok");
  } catch (err) {
    act.ctx.toast(err.message, "error");
  }
}
