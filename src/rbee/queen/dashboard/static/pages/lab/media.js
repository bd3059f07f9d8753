// The playground's other modalities, each through its OpenAI route: embeddings, speech
// (played from the returned bytes), transcription (a file upload), images and video.
import { clear } from "../../dom.js";

const VOICES = ["alloy", "ash", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer"];
const AUDIO_FORMATS = ["wav", "mp3", "opus", "aac", "flac"]; // pcm has no header to play
const IMAGE_SIZES = ["auto", "256x256", "512x512", "1024x1024"];
const VIDEO_SIZES = ["256x256", "512x512", "720x1280", "1280x720"];

function select(h, label, options, attrs = {}) {
  return h("label", {}, label, h("select", attrs, options.map((o) => h("option", { value: o }, o))));
}

// A size field: a list of suggestions, but any WIDTHxHEIGHT may be typed, since a diffusers
// pipeline paints any multiple of 8 (a small pipeline's own size is often far below
// OpenAI's sizes, and on a CPU a 256 px picture can take a hundred times a 64 px one).
function sizeField(h, id, sizes, value) {
  const list = h("datalist", { id: `${id}-list` }, sizes.map((s) => h("option", { value: s })));
  const input = h("input", { type: "text", list: list.id, value, required: true, autocomplete: "off",
                             pattern: "auto|[1-9][0-9]{0,4}x[1-9][0-9]{0,4}", spellcheck: "false",
                             title: "auto or WIDTHxHEIGHT, e.g. 512x512", "data-testid": id });
  return { element: h("label", {}, "size", input, list), value: () => input.value.trim() };
}

// rbee's `steps` (denoising steps): empty leaves the model's default (the queen's for video).
function stepsField(h, id) {
  const input = h("input", { type: "number", min: 1, max: 500, step: 1, placeholder: "default",
                             "data-testid": id });
  return { element: h("label", {}, "steps", input),
           value: () => (input.value === "" ? undefined : Number(input.value)) };
}

function form(h, toast, fields, label, run, out) {
  const button = h("button", { type: "submit", class: "primary" }, label);
  const f = h("form", {}, fields, h("div", { class: "actions" }, button), out);
  f.addEventListener("submit", async (e) => {
    e.preventDefault();
    button.disabled = true;
    try { await run(); } catch (err) { clear(out); out.append(h("p", { class: "error", role: "alert" }, err.message)); toast(err.message, "error"); } finally { button.disabled = false; }
  });
  return f;
}

export function embeddingsPanel(h, api, toast, picker) {
  const text = h("textarea", { class: "prompt", "aria-label": "Text to embed", maxlength: 32000,
                               "data-testid": "embed-input" }, "");
  const out = h("div", { "data-testid": "embed-out" });
  return { element: form(h, toast, [text], "Embed", async () => {
    const r = await api.post("/v1/embeddings", { model: picker.value, input: text.value });
    const v = r.data[0].embedding;
    clear(out);
    out.append(h("p", {}, h("strong", { "data-testid": "dimensions" }, String(v.length)), " dimensions · ",
                 `${r.usage ? r.usage.prompt_tokens : "?"} tokens`),
               h("p", { class: "vector", "data-testid": "vector" },
                 `[${v.slice(0, 8).map((x) => x.toFixed(4)).join(", ")}${v.length > 8 ? ", …" : ""}]`));
  }, out) };
}

export function speechPanel(h, api, toast, picker) {
  const text = h("textarea", { class: "prompt", "aria-label": "Text to speak", maxlength: 4096,
                               "data-testid": "speech-input" });
  const voice = select(h, "voice", VOICES, { "data-testid": "voice" });
  const fmt = select(h, "format", AUDIO_FORMATS, { "data-testid": "audio-format" });
  const out = h("div", { class: "media-out", "data-testid": "speech-out" });
  let url = null;
  const element = form(h, toast, [text, h("div", { class: "grid" }, voice, fmt)], "Speak", async () => {
    const format = fmt.querySelector("select").value;
    const response = await api.post("/v1/audio/speech", { model: picker.value, input: text.value,
      voice: voice.querySelector("select").value, response_format: format });
    const blob = await response.blob();
    if (url) URL.revokeObjectURL(url);
    url = URL.createObjectURL(blob);
    clear(out);
    out.append(h("audio", { controls: true, src: url, "data-testid": "audio" }),
               h("p", { class: "muted" }, `${format} · ${blob.size} bytes`));
  }, out);
  return { element, cleanup: () => { if (url) URL.revokeObjectURL(url); } };
}

export function transcriptionPanel(h, api, toast, picker) {
  const file = h("input", { type: "file", accept: "audio/*,video/*", "aria-label": "Audio file",
                            "data-testid": "audio-file" });
  const task = select(h, "task", ["transcriptions", "translations"]);
  const out = h("div", { "data-testid": "transcript-out" });
  return { element: form(h, toast, [h("div", { class: "actions" }, file, task)], "Transcribe", async () => {
    if (!file.files.length) throw new Error("choose an audio file first");
    const data = new FormData();
    data.append("file", file.files[0]);
    data.append("model", picker.value);
    data.append("response_format", "json");
    const r = await api.upload(`/v1/audio/${task.querySelector("select").value}`, data);
    clear(out);
    out.append(h("p", { class: "msg assistant", "data-testid": "transcript" }, r.text));
  }, out) };
}

export function imagesPanel(h, api, toast, picker) {
  const prompt = h("textarea", { class: "prompt", "aria-label": "Image prompt", maxlength: 32000,
                                 "data-testid": "image-prompt" });
  const size = sizeField(h, "image-size", IMAGE_SIZES, "auto");
  const steps = stepsField(h, "image-steps");
  const out = h("div", { class: "media-out", "data-testid": "image-out" });
  return { element: form(h, toast, [prompt, h("div", { class: "grid" }, size.element, steps.element)], "Paint", async () => {
    const r = await api.post("/v1/images/generations", { model: picker.value, prompt: prompt.value,
      size: size.value(), steps: steps.value(), n: 1, response_format: "b64_json" });
    clear(out);
    const fmt = r.output_format || "png";
    for (const img of r.data) {
      out.append(h("img", { src: `data:image/${fmt};base64,${img.b64_json}`, alt: prompt.value,
                            "data-testid": "image" }));
    }
  }, out) };
}

export function videoPanel(h, api, toast, picker) {
  const prompt = h("textarea", { class: "prompt", "aria-label": "Video prompt", maxlength: 32000,
                                 "data-testid": "video-prompt" });
  const size = sizeField(h, "video-size", VIDEO_SIZES, VIDEO_SIZES[0]);
  const steps = stepsField(h, "video-steps");
  const seconds = h("label", {}, "seconds", h("input", { type: "number", min: 1, max: 12, value: 4,
                                                         "data-testid": "video-seconds" }));
  const out = h("div", { class: "media-out", "data-testid": "video-out" });
  const controller = new AbortController();
  let url = null;
  const element = form(h, toast, [prompt, h("div", { class: "grid" }, size.element, seconds, steps.element)], "Make video", async () => {
    let video = await api.post("/v1/videos", { model: picker.value, prompt: prompt.value,
      size: size.value(), seconds: seconds.querySelector("input").value, steps: steps.value() },
      controller.signal);
    const status = h("p", { "data-testid": "video-status" });
    clear(out);
    out.append(status);
    // The Videos API is polled (as OpenAI's create_and_poll does); the queen asks for 500 ms.
    while (video.status === "queued" || video.status === "in_progress") {
      status.textContent = `${video.status} · ${video.progress || 0}%`;
      await new Promise((resolve) => setTimeout(resolve, 500));
      if (controller.signal.aborted) return;
      video = await api.get(`/v1/videos/${encodeURIComponent(video.id)}`, controller.signal);
    }
    if (video.status !== "completed") throw new Error((video.error && video.error.message) || video.status);
    const response = await api.get(`/v1/videos/${encodeURIComponent(video.id)}/content`, controller.signal);
    if (url) URL.revokeObjectURL(url);
    url = URL.createObjectURL(await response.blob());
    status.textContent = `completed · ${video.seconds} s · ${video.size}`;
    out.append(h("video", { controls: true, src: url, "data-testid": "video" }));
  }, out);
  return { element, cleanup: () => { controller.abort(); if (url) URL.revokeObjectURL(url); } };
}
