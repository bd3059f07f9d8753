// The playground's chat: streamed answers from POST /v1/chat/completions (stream: true),
// the sampling options, a system prompt, and a stop button that aborts the stream (the
// queen closes the worker's stream and the worker stops generating).
import { clear } from "../../dom.js";

export function chatPanel(h, api, toast, picker) {
  const log = h("div", { class: "chat-log", "aria-live": "polite", "data-testid": "chat-log" });
  const input = h("textarea", { class: "prompt", "aria-label": "Message", maxlength: 32000,
                                "data-testid": "chat-input", placeholder: "Say something…" });
  const system = h("textarea", { class: "prompt", "aria-label": "System prompt", maxlength: 32000,
                                 "data-testid": "system-prompt", placeholder: "(none)" });
  const num = (label, attrs) => h("label", {}, label, h("input", { type: "number", ...attrs }));
  const temperature = num("temperature", { min: 0, max: 2, step: 0.1, value: 0.7, "data-testid": "temperature" });
  const topP = num("top_p", { min: 0, max: 1, step: 0.05, value: 1 });
  const maxTokens = num("max_tokens", { min: 1, max: 8192, step: 1, value: 128, "data-testid": "max-tokens" });
  const seed = num("seed", { step: 1, placeholder: "random", "data-testid": "seed" });
  const stop = h("label", {}, "stop (one per line)", h("textarea", { rows: 1, maxlength: 512 }));
  const send = h("button", { type: "submit", class: "primary", "data-testid": "send" }, "Send");
  const stopButton = h("button", { type: "button", disabled: true, "data-testid": "stop" }, "Stop");
  const history = [];
  let controller = null;

  const value = (label) => label.querySelector("input, textarea").value;
  function body() {
    const messages = [];
    if (system.value.trim()) messages.push({ role: "system", content: system.value });
    const b = { model: picker.value, messages: messages.concat(history), stream: true,
                stream_options: { include_usage: true },
                temperature: Number(value(temperature)), top_p: Number(value(topP)),
                max_tokens: Number(value(maxTokens)) };
    if (value(seed) !== "") b.seed = Number(value(seed));
    const stops = value(stop).split("\n").filter((s) => s).slice(0, 4);
    if (stops.length) b.stop = stops;
    return b;
  }

  async function submit(event) {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || controller) return;
    history.push({ role: "user", content: text });
    log.append(h("div", { class: "msg user" }, text));
    input.value = "";
    const answer = h("div", { class: "msg assistant", "data-testid": "answer", "data-state": "streaming" });
    const meta = h("div", { class: "muted" });
    log.append(answer, meta);
    controller = new AbortController();
    send.disabled = true;
    stopButton.disabled = false;
    let content = "";
    let state = "done";
    try {
      await api.stream("/v1/chat/completions", body(), (frame) => {
        const d = frame.data;
        if (d === "[DONE]" || typeof d !== "object" || d === null) return;
        if (d.error) throw new Error(d.error.message);
        for (const choice of d.choices || []) {
          const piece = (choice.delta && choice.delta.content) || "";
          if (piece) { content += piece; answer.textContent = content; }
          if (choice.finish_reason) meta.textContent = `finish: ${choice.finish_reason}`;
        }
        if (d.usage) meta.textContent += ` · ${d.usage.prompt_tokens} in, ${d.usage.completion_tokens} out`;
      }, controller.signal);
    } catch (err) {
      state = err.name === "AbortError" ? "stopped" : "error";
      meta.textContent = state === "stopped" ? "stopped" : err.message;
      if (state === "error") toast(err.message, "error");
    } finally {
      answer.dataset.state = state;
      history.push({ role: "assistant", content });
      controller = null;
      send.disabled = false;
      stopButton.disabled = true;
    }
  }

  stopButton.addEventListener("click", () => { if (controller) controller.abort(); });
  const clearButton = h("button", { type: "button" }, "New chat");
  clearButton.addEventListener("click", () => { if (!controller) { history.length = 0; clear(log); } });
  const form = h("form", { "data-testid": "chat-form" },
    h("details", {}, h("summary", {}, "System prompt and sampling"),
      h("label", {}, "System prompt", system),
      h("div", { class: "grid" }, temperature, topP, maxTokens, seed, stop)),
    log, input, h("div", { class: "actions" }, send, stopButton, clearButton));
  form.addEventListener("submit", submit);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
  });
  return { element: form, cleanup: () => { if (controller) controller.abort(); } };
}
