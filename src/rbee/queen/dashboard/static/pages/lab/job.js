// A job's result for pages that need its answer, not its narration (the scheduler's
// `script_*` operations, as `rbee script ...` runs them): the shell's `followJob` reads the
// stream; this keeps the `result` event and turns an `error` or `cancelled` end into a
// thrown Error (with the error's `code`).
import { followJob } from "../../jobrun.js";

export async function jobResult(api, body, signal) {
  const created = await api.post("/v1/jobs", body, signal);
  let result = null;
  const terminal = await followJob(api, created.job_id, null, {
    signal, onEvent: (frame) => { if (frame.event === "result") result = frame.data; },
  });
  if (!terminal || terminal.event !== "done") {
    const data = (terminal && terminal.data) || {};
    const err = new Error(data.message || (terminal ? terminal.event : "the job's stream ended early"));
    err.code = data.code || (terminal ? terminal.event : null);
    throw err;
  }
  return result;
}
