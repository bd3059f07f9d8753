// GDPR (admin): a person's export as a JSON download, erasure after typing their id again
// (the queen's signed receipt is shown, with its check), and consent decisions.
// The same routes as `rbee gdpr`: /gdpr/export, /gdpr/delete, /gdpr/consent, /gdpr/receipts/verify.
import { download, field, form, input, on, select, setOptions } from "./_biz.js";

const page = { id: "gdpr", title: "GDPR", role: "admin" };

function subjectField(h, name) {
  return field(h, "Subject (user id)", input(h, name, { required: "", maxlength: "64",
    list: "biz-gdpr-people", autocomplete: "off" }));
}

function exportForm(ctx) {
  const { h, api } = ctx;
  const summary = h("p", { role: "status", "data-export-summary": "" });
  const el = form(h, "gdpr-export", [subjectField(h, "export-subject")], "Export as JSON",
    async (f) => {
      const subject = f.elements["export-subject"].value.trim();
      const data = await api.get(`/gdpr/export?${new URLSearchParams({ subject })}`);
      download(`rbee-gdpr-${subject}.json`, JSON.stringify(data, null, 2));
      const counts = Object.entries(data).filter(([, v]) => Array.isArray(v))
        .map(([k, v]) => `${k}: ${v.length}`).join(", ");
      summary.textContent = `Exported ${subject} (${counts})`;
    });
  el.append(summary);
  return el;
}

function receiptOf(ctx, receipt) {
  const { h, api } = ctx;
  const check = h("span", { role: "status", "data-receipt-check": "" });
  const verify = on(h("button", { type: "button" }, "Check the signature"), "click", async () => {
    try {
      const { valid } = await api.post("/gdpr/receipts/verify", receipt);
      check.textContent = valid ? " Valid: issued by this queen, unchanged." : " NOT valid.";
    } catch (err) {
      check.textContent = ` ${err.message}`;
    }
  });
  const save = on(h("button", { type: "button" }, "Download the receipt"), "click",
    () => download(`rbee-gdpr-receipt-${receipt.subject}.json`, JSON.stringify(receipt, null, 2)));
  return h("div", { class: "biz-receipt card", "data-receipt": "" },
    h("p", {}, h("strong", {}, `Erased ${receipt.subject}. `),
      "Keep this signed receipt: the queen keeps no copy (it names the person)."),
    h("pre", {}, JSON.stringify(receipt, null, 2)), verify, save, check);
}

function deleteForm(ctx, refresh) {
  const { h, api } = ctx;
  const out = h("div", {});
  const el = form(h, "gdpr-delete", [subjectField(h, "delete-subject"),
    field(h, "Type the user id again to confirm", input(h, "delete-confirm", { required: "",
      autocomplete: "off" }))], "Erase this person", async (f) => {
    const subject = f.elements["delete-subject"].value.trim();
    if (f.elements["delete-confirm"].value.trim() !== subject) {
      throw new Error("the confirmation does not match the subject: nothing was erased");
    }
    const receipt = await api.post("/gdpr/delete", { subject });
    f.reset();
    out.replaceChildren(receiptOf(ctx, receipt));
    await refresh();
  });
  el.querySelector("button[type=submit]").className = "danger"; // it cannot be undone
  return h("div", {}, el, out);
}

function consentForm(ctx) {
  const { h, api } = ctx;
  const result = h("p", { role: "status", "data-consent-result": "" });
  const el = form(h, "gdpr-consent", [subjectField(h, "consent-subject"),
    field(h, "Purpose", input(h, "consent-purpose", { required: "", value: "processing",
      maxlength: "64" })),
    field(h, "Decision", select(h, "consent-granted", [["true", "granted"], ["false", "withdrawn"]])),
  ], "Record consent", async (f) => {
    const body = { subject: f.elements["consent-subject"].value.trim(),
      purpose: f.elements["consent-purpose"].value.trim(),
      granted: f.elements["consent-granted"].value === "true" };
    const c = await api.post("/gdpr/consent", body);
    result.textContent = `${c.subject}: ${c.purpose} ${c.granted ? "granted" : "withdrawn"}`;
  });
  el.append(result);
  return el;
}

function render(root, ctx) {
  const { h, api } = ctx;
  const people = h("datalist", { id: "biz-gdpr-people" });
  async function refresh() {
    try {
      const { data } = await api.get("/v1/admin/users");
      setOptions(h, people, data.map((u) => [u.id, u.name]));
    } catch (err) {
      ctx.toast(err.message, "error");
    }
  }
  root.replaceChildren(people, h("h2", {}, "Export a person's data"), exportForm(ctx),
    h("h2", {}, "Erase a person"), deleteForm(ctx, refresh),
    h("h2", {}, "Consent"), consentForm(ctx));
  refresh();
}

export default { ...page, render };
