// Cluster at a glance, live: every hive, its devices with memory bars, and its workers.
import { bytes, clear, seconds } from "../dom.js";

export default {
  id: "cluster",
  title: "Cluster",
  role: "user",
  render(root, { cluster, h }) {
    const list = h("div", { class: "hives" }, h("p", { class: "muted" }, "Waiting for the queen…"));
    root.appendChild(list);
    return cluster.subscribe((state) => {
      clear(list);
      if (!state.hives.length) list.appendChild(h("p", { class: "muted" }, "No hives yet."));
      for (const hive of state.hives) list.appendChild(hiveCard(h, hive));
    });
  },
};

function hiveCard(h, hive) {
  return h("article", { class: `hive state-${hive.state}`, "data-hive": hive.id },
    h("header", {},
      h("h2", {}, hive.id),
      h("span", { class: `badge ${hive.state}`, "data-state": hive.state }, hive.state),
      hive.region ? h("span", { class: "tag" }, `region ${hive.region}`) : null,
      Object.entries(hive.labels || {}).map(([k, v]) => h("span", { class: "tag" }, `${k}=${v}`)),
      h("span", { class: "muted" },
        hive.last_report_s === null ? "never reported" : `last report ${seconds(hive.last_report_s)} ago`)),
    hive.devices.map((d) => deviceRow(h, d)));
}

function deviceRow(h, d) {
  return h("section", { class: "device", "data-device": d.id },
    h("h3", {}, `${d.id} · ${d.name}`),
    d.memory_total ? h("div", { class: "muted" },
      `${bytes(d.memory_total - d.memory_free)} used, ${bytes(d.reserved)} reserved by rbee, `
      + `${bytes(d.memory_free)} free of ${bytes(d.memory_total)}`) : null,
    d.workers.map((w) => h("div", { class: "worker", "data-worker": w.id, "data-model": w.model },
      h("strong", {}, w.model), ` ${w.kind} · `,
      h("span", { class: `badge ${w.state}` }, w.state),
      ` · ${w.inflight} in flight`)));
}
