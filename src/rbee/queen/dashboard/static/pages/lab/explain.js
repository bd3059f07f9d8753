// A dry run's answer (POST /v1/scheduler/explain) as people read it: the decision, then for
// routing and for placement every candidate with its verdict and the reason it was rejected.

const ACTIONS = {
  route: "use a running worker", place: "start a new worker", "evict-then-place":
  "stop idle workers, then start a new one", refused: "refused by the script",
  "no-capacity": "nowhere: no device has room",
};

export function renderDecision(h, plan) {
  const place = plan.place || {};
  const route = plan.route || {};
  const where = plan.decision === "route" ? `worker ${route.worker} on ${route.hive_id}`
    : place.hive_id ? `${place.hive_id}/${place.device}` : "–";
  return h("div", { class: "decision", "data-testid": "decision" },
    h("p", {},
      h("strong", {}, "Decision: "),
      h("span", { class: "badge", "data-decision": plan.decision }, plan.decision),
      ` ${ACTIONS[plan.decision] || ""} → `, h("strong", { "data-testid": "where" }, where)),
    h("p", { class: "muted" },
      `${plan.model} needs ${(plan.need_bytes / 2 ** 20).toFixed(0)} MiB · script: `
      + `${plan.script || "none (built-in policy)"}`),
    plan.script_disabled ? h("p", { class: "error" }, `script disabled: ${plan.script_disabled}`)
      : null,
    place.eviction ? h("p", {}, `would stop ${place.eviction.stop.join(", ")} on `
      + place.eviction.placement) : null,
    section(h, "Routing (running workers)", route.report, route.worker),
    section(h, "Placement (devices for a new worker)", place.report,
            place.hive_id ? `${place.hive_id}/${place.device}` : null));
}

function section(h, title, report, chosen) {
  if (!report) return null;
  const scores = new Map((report.top || []).map((t) => [t.candidate, t.score]));
  const rows = (report.candidates || []).map((c) => {
    const verdict = c.candidate === chosen ? "chosen" : c.verdict;
    return h("tr", { "data-candidate": c.candidate, "data-verdict": verdict },
      h("td", {}, c.candidate),
      h("td", {}, h("span", { class: `badge verdict-${verdict}` }, verdict)),
      h("td", {}, c.reason || (scores.has(c.candidate) ? `score ${scores.get(c.candidate)}` : "")));
  });
  return h("section", { class: "explain-part" },
    h("h3", {}, title),
    h("p", { class: "muted" }, `policy ${report.policy} · ${report.explain}`),
    (report.notes || []).map((n) => h("p", { class: "note" }, n)),
    rows.length ? h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "candidate"), h("th", {}, "verdict"),
                      h("th", {}, "why"))),
      h("tbody", {}, rows))) : h("p", { class: "muted" }, "no candidates"),
    report.candidates_omitted ? h("p", { class: "muted" },
      `and ${report.candidates_omitted} more (counted above)`) : null);
}
