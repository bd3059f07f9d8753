// Run a job (POST /v1/jobs) and follow its stream to the end: the same job operations the
// CLI runs (`rbee script ...`). Resolves with the `result` event's data; rejects with the
// `error` event's message (and its code).
export async function runJob(api, body, { onEvent, signal } = {}) {
  const created = await api.post("/v1/jobs", body, signal);
  let result = null;
  let failure = null;
  await api.stream(created.sse_url, null, (frame) => {
    if (onEvent) onEvent(frame);
    if (frame.event === "result") result = frame.data;
    if (frame.event === "error") failure = frame.data;
    if (frame.event === "cancelled") failure = { message: "cancelled", code: "cancelled" };
  }, signal);
  if (failure) {
    const err = new Error(failure.message || "the job failed");
    err.code = failure.code || null;
    throw err;
  }
  return result;
}
