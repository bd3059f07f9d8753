// The queen's API as the pages use it: JSON over fetch with the session cookie, the
// CSRF header on every write, and OpenAI error envelopes turned into Errors.

export class ApiError extends Error {
  constructor(status, error) {
    super((error && error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = error ? error.code : null;
    this.param = error ? error.param : null;
  }
}

async function failure(response) {
  let error = null;
  try {
    error = (await response.json()).error;
  } catch {
    error = { message: `${response.status} ${response.statusText}` };
  }
  return new ApiError(response.status, error);
}

// onStaleSession: called when a write was refused `csrf_failed`; resolves true when the
// session's current token is now in `session` and the write may be tried once more.
export function createApi(session, onUnauthorized, onStaleSession) {
  function headers(extra) {
    const out = { ...extra };
    if (session.csrf_token) out["X-CSRF-Token"] = session.csrf_token;
    return out;
  }

  // A login in another tab replaces the browser's one session cookie, so this tab's CSRF
  // token is the old session's: its writes would fail until a reload. Ask which session the
  // cookie is now, and try again once (the app decides whether that is still this tab's).
  async function send(path, init) {
    const first = await fetch(path, { ...init, headers: headers(init.headers) });
    if (first.status !== 403 || init.method === "GET" || !onStaleSession) return first;
    const err = await failure(first.clone());
    if (err.code !== "csrf_failed" || !(await onStaleSession())) return first;
    return fetch(path, { ...init, headers: headers(init.headers) });
  }

  async function request(method, path, body, signal) {
    const init = { method, credentials: "same-origin", headers: {}, signal };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return checked(await send(path, init));
  }

  async function checked(response) {
    if (!response.ok) {
      const err = await failure(response);
      if (response.status === 401 && onUnauthorized) onUnauthorized(err);
      throw err;
    }
    if (response.status === 204) return null;
    const type = response.headers.get("content-type") || "";
    return type.includes("json") ? response.json() : response;
  }

  // POST (or GET with body null) then read server-sent events: onEvent({event, id, data})
  // with data parsed as JSON when it is JSON ("[DONE]" stays a string).
  async function stream(path, body, onEvent, signal) {
    const init = { method: body === null || body === undefined ? "GET" : "POST",
                   credentials: "same-origin", headers: { Accept: "text/event-stream" },
                   signal };
    if (init.method === "POST") {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await send(path, init);
    if (!response.ok) {
      await checked(response);
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        const frame = parseFrame(block);
        if (frame) onEvent(frame);
      }
    }
  }

  async function upload(path, formData, signal) {
    return checked(await send(path, { method: "POST", credentials: "same-origin", headers: {},
                                      body: formData, signal }));
  }

  return {
    get: (path, signal) => request("GET", path, undefined, signal),
    post: (path, body, signal) => request("POST", path, body === undefined ? {} : body, signal),
    put: (path, body, signal) => request("PUT", path, body === undefined ? {} : body, signal),
    patch: (path, body, signal) => request("PATCH", path, body === undefined ? {} : body, signal),
    del: (path, signal) => request("DELETE", path, undefined, signal),
    stream,
    upload,
  };
}

export function parseFrame(block) {
  let event = "message";
  let id = null;
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "id") id = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  const raw = data.join("\n");
  let parsed = raw;
  try { parsed = JSON.parse(raw); } catch { /* "[DONE]" and plain text stay strings */ }
  return { event, id, data: parsed };
}
