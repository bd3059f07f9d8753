// Jobs: the list (filters by state and kind), refreshed when the queen pushes a change in
// the running jobs (/ui/events: no polling); follow one job's narration and tokens; cancel.
import { clear } from "../dom.js";
import { followJob } from "../jobrun.js";

const STATES = ["", "queued", "running", "done", "error", "cancelled"];

export default {
  id: "jobs",
  title: "Jobs",
  role: "user",
  render(root, ctx) {
    const { api, cluster, h, toast } = ctx;
    const state = h("select", { id: "job-state" }, STATES.map((s) => h("option", { value: s }, s || "any")));
    const kind = h("input", { id: "job-kind", placeholder: "any operation", maxlength: 64,
                              autocomplete: "off" });
    const body = h("tbody", {});
    const table = h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Job", "Operation", "State", "Created", "Subject", ""].map(
        (x) => h("th", { scope: "col" }, x)))), body));
    const detail = h("section", { class: "card", id: "job-detail", hidden: true },
      h("h2", { id: "job-title" }, ""),
      h("p", { id: "job-tokens", class: "tokens", "aria-live": "polite" }),
      h("div", { class: "log", id: "job-log", tabindex: "0" }));
    root.append(h("form", { class: "actions", onsubmit: (e) => { e.preventDefault(); load(); } },
      h("label", { for: "job-state" }, "State", state),
      h("label", { for: "job-kind" }, "Operation", kind),
      h("button", { type: "submit" }, "Filter")), table, detail);
    let following = null;
    let running = "";
    let rows = [];

    async function load() {
      const params = new URLSearchParams({ limit: "100" });
      if (state.value) params.set("state", state.value);
      try {
        rows = (await api.get(`/v1/jobs?${params}`)).data;
      } catch (err) {
        toast(err.message, "error");
        return;
      }
      const want = kind.value.trim();
      clear(body);
      const shown = rows.filter((j) => !want || j.operation.includes(want));
      if (!shown.length) body.appendChild(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No jobs.")));
      for (const j of shown) body.appendChild(row(j));
    }

    function row(j) {
      const live = j.state === "running" || j.state === "queued";
      const subject = j.request.model || j.request.hive_id || j.request.worker_id || j.request.name || "";
      return h("tr", { "data-job": j.job_id, "data-state": j.state },
        h("td", {}, h("code", {}, j.job_id.slice(0, 12))),
        h("td", {}, j.operation),
        h("td", {}, h("span", { class: `badge ${j.state}` }, j.state)),
        h("td", {}, new Date(j.created_at * 1000).toLocaleTimeString()),
        h("td", {}, String(subject)),
        h("td", { class: "row-actions" },
          h("button", { type: "button", onclick: () => follow(j) }, "Follow"),
          live ? h("button", { type: "button", class: "danger", onclick: () => cancel(j) }, "Cancel") : null));
    }

    async function follow(j) {
      if (following) following.abort();
      following = new AbortController();
      detail.hidden = false;
      detail.querySelector("#job-title").textContent = `${j.operation} · ${j.job_id}`;
      const tokens = detail.querySelector("#job-tokens");
      const log = detail.querySelector("#job-log");
      tokens.textContent = "";
      log.replaceChildren();
      try {
        const end = await followJob(api, j.job_id, log, {
          signal: following.signal,
          onEvent: (f) => { if (f.event === "token") tokens.textContent += f.data.t; },
        });
        if (end) log.appendChild(h("div", { class: "muted", "data-end": end.event }, `— ${end.event}`));
      } catch (err) {
        if (err.name !== "AbortError") toast(err.message, "error");
      }
    }

    async function cancel(j) {
      try {
        const after = await api.del(`/v1/jobs/${encodeURIComponent(j.job_id)}`);
        toast(`job ${j.job_id.slice(0, 12)} ${after.state}`, "ok");
        load();
      } catch (err) {
        toast(err.message, "error");
      }
    }

    load();
    const unsubscribe = cluster.subscribe((view) => {
      const now = view.jobs.map((j) => j.id).sort().join(",");
      if (now !== running) { running = now; load(); }
    });
    return () => { unsubscribe(); if (following) following.abort(); };
  },
};
