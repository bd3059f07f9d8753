// Submit a job and follow its stream into a narration panel (shared by the pages that act).
import { h } from "./dom.js";

// Returns {job_id, done: Promise<terminal event>}; lines go into `log` as they arrive.
export async function runJob(api, body, log, { onEvent, signal } = {}) {
  const created = await api.post("/v1/jobs", body);
  const done = followJob(api, created.job_id, log, { onEvent, signal });
  return { job_id: created.job_id, done };
}

export async function followJob(api, jobId, log, { onEvent, signal } = {}) {
  let terminal = null;
  await api.stream(`/v1/jobs/${encodeURIComponent(jobId)}/stream`, null, (frame) => {
    if (onEvent) onEvent(frame);
    if (log) log.appendChild(line(frame));
    if (log) log.scrollTop = log.scrollHeight;
    if (["done", "error", "cancelled"].includes(frame.event)) terminal = frame;
  }, signal);
  return terminal;
}

function line(frame) {
  const d = frame.data || {};
  let text;
  switch (frame.event) {
    case "narration": text = `[${d.actor || "queen"}] ${d.action || ""}: ${d.message || ""}`; break;
    case "token": text = d.t || ""; break;
    case "progress": text = `progress ${d.stage || ""} ${Math.round((d.fraction ?? d.progress ?? 0) * 100)}%`
      + (d.bytes ? ` (${d.bytes} bytes)` : ""); break;
    case "error": text = `error: ${d.message || JSON.stringify(d)}`; break;
    default: text = `${frame.event}: ${JSON.stringify(d)}`;
  }
  return h("div", { class: `ev ev-${frame.event}`, "data-event": frame.event }, text);
}
