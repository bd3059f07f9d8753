// The playground: try every kind of model the cluster serves, through the same /v1 routes
// the SDKs use. One tab per modality; each tab's model field suggests the /v1/models of its
// kind and takes any other model reference typed in.
import { clear } from "../dom.js";
import { chatPanel } from "./lab/chat.js";
import { embeddingsPanel, imagesPanel, speechPanel, transcriptionPanel, videoPanel } from "./lab/media.js";
import { useStyles } from "./lab/styles.js";

const TABS = [
  { id: "chat", title: "Chat", kind: "chat", make: chatPanel },
  { id: "embeddings", title: "Embeddings", kind: "embedding", make: embeddingsPanel },
  { id: "speech", title: "Speech", kind: "speech", make: speechPanel },
  { id: "transcription", title: "Transcription", kind: "transcription", make: transcriptionPanel },
  { id: "images", title: "Images", kind: "image", make: imagesPanel },
  { id: "video", title: "Video", kind: "video", make: videoPanel },
];

export default {
  id: "playground",
  title: "Playground",
  role: "user",
  render(root, { api, h, toast }) {
    useStyles();
    const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Modality" });
    const body = h("div", { role: "tabpanel" });
    root.append(tabs, body);
    let models = null; // until /v1/models answers
    let cleanup = null;
    let current = TABS[0];

    function show(tab) {
      if (cleanup) cleanup();
      cleanup = null;
      current = tab;
      for (const b of tabs.children) b.setAttribute("aria-selected", String(b.dataset.tab === tab.id));
      clear(body);
      if (models === null) {
        body.append(h("p", { class: "muted" }, "Loading models…"));
        return;
      }
      const mine = models.filter((m) => m.kind === tab.kind);
      // A typed name, with the queen's models of this kind as suggestions: any model
      // reference works (`hf:org/repo:file`, `file:/path`, an alias), loaded on first use
      // as from any client, not only what already runs.
      const list = h("datalist", { id: `models-${tab.id}` },
        mine.map((m) => h("option", { value: m.id })));
      const picker = h("input", { type: "text", list: list.id, value: mine.length ? mine[0].id : "",
                                  required: true, maxlength: 1024, spellcheck: "false",
                                  autocomplete: "off", "aria-label": "Model", "data-testid": "model",
                                  placeholder: "a model name, hf:org/repo:file or file:/path" });
      const panel = tab.make(h, api, toast, picker);
      cleanup = panel.cleanup || null;
      const note = mine.length ? null
        : h("p", { class: "muted" }, `No ${tab.kind} model runs yet: type one to load it.`);
      body.append(h("div", { class: "actions" }, h("label", {}, "Model", picker), list));
      if (note) body.append(note);
      body.append(panel.element);
    }

    for (const tab of TABS) {
      const b = h("button", { type: "button", role: "tab", "aria-selected": "false",
                              "data-tab": tab.id }, tab.title);
      b.addEventListener("click", () => show(tab));
      tabs.append(b);
    }
    show(current);
    // A tab chosen while the models load stays chosen.
    api.get("/v1/models").then((r) => { models = r.data; show(current); })
      .catch((err) => toast(err.message, "error"));
    return () => { if (cleanup) cleanup(); };
  },
};
