// The dashboard shell: login, role-filtered navigation, a hash router (#/<page-id>), the
// page context every page module receives (api, cluster, session, toast, h).
import { createApi } from "./api.js";
import { createCluster } from "./cluster.js";
import { clear, h } from "./dom.js";
import pages from "./pages/manifest.js";

const ROLES = ["user", "operator", "admin"];
const $ = (id) => document.getElementById(id);
const auth = { csrf_token: "" }; // kept here only; pages never see it
let session = null;
let cleanup = null;

function can(role) {
  return session && ROLES.indexOf(session.role) >= ROLES.indexOf(role);
}

export function toast(message, kind = "info") {
  const el = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
               String(message));
  $("toasts").appendChild(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

const cluster = createCluster(() => showLogin("Your session has ended; log in again."));
const api = createApi(auth, () => {
  if (session) showLogin("Your session has ended; log in again.");
}, staleSession);

// A write came back `csrf_failed`: another tab logged in, and the browser's cookie is its
// session now. The same key: take that session's token and let the write go again. Another
// key: never act as it unasked; show the app as that key and tell why.
async function staleSession() {
  if (!session) return false;
  let info;
  try {
    info = await api.get("/ui/session");
  } catch {
    return false; // a 401 already showed the login
  }
  if (info.key_prefix === session.key_prefix && info.role === session.role
      && info.csrf_token) {
    auth.csrf_token = info.csrf_token;
    return true;
  }
  showApp(info);
  toast(`Another tab logged in as ${info.key_prefix} (${info.role}); nothing was done.`, "error");
  return false;
}

function visiblePages() {
  return pages.filter((p) => can(p.role));
}

function renderNav() {
  const nav = $("nav");
  clear(nav);
  const current = location.hash.replace(/^#\//, "");
  for (const p of visiblePages()) {
    nav.appendChild(h("a", { href: `#/${p.id}`, "aria-current": p.id === current ? "page" : null,
                             "data-page": p.id }, p.title));
  }
}

function route() {
  if (!session) return;
  if (cleanup) { try { cleanup(); } catch (err) { console.error(err); } }
  cleanup = null;
  const allowed = visiblePages();
  const id = location.hash.replace(/^#\//, "");
  const known = pages.find((p) => p.id === id);
  const page = allowed.find((p) => p.id === id) || allowed[0];
  renderNav();
  const root = $("page");
  clear(root);
  if (known && !can(known.role)) {  // a direct visit: said, not silently redirected
    document.title = `${known.title} · rbee`;
    root.appendChild(h("h1", {}, known.title));
    root.appendChild(h("p", { class: "error denied", role: "alert" },
                       `Not permitted: this page needs an ${known.role} key.`));
    return;
  }
  if (!page) {
    root.appendChild(h("p", {}, "This key's role has no pages."));
    return;
  }
  if (page.id !== id) { history.replaceState(null, "", `#/${page.id}`); renderNav(); }
  document.title = `${page.title} · rbee`;
  root.appendChild(h("h1", {}, page.title));
  const body = h("div", { class: "page", "data-page-id": page.id });
  root.appendChild(body);
  const ctx = { api, cluster, session: { role: session.role, tenant: session.tenant,
                                         key_prefix: session.key_prefix }, toast, h };
  try {
    const result = page.render(body, ctx);
    if (typeof result === "function") cleanup = result;
  } catch (err) {
    body.appendChild(h("p", { class: "error", role: "alert" }, `This page failed: ${err.message}`));
  }
}

function showApp(info) {
  session = info;
  auth.csrf_token = info.csrf_token || "";
  $("login").hidden = true;
  $("logout").hidden = !info.csrf_token; // a loopback queen without keys has no session
  $("who").textContent = `${info.key_prefix} · ${info.role}${info.tenant ? ` · ${info.tenant}` : ""}`;
  cluster.open();
  route();
}

function showLogin(message) {
  if (cleanup) { try { cleanup(); } catch (err) { console.error(err); } }
  cleanup = null;
  session = null;
  auth.csrf_token = "";
  cluster.close();
  clear($("nav"));
  clear($("page"));
  $("who").textContent = "";
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("api-key").focus();
}

async function login(event) {
  event.preventDefault();
  const input = $("api-key");
  const button = event.target.querySelector("button");
  button.disabled = true;
  $("login-error").textContent = "";
  try {
    const response = await fetch("/ui/login", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ api_key: input.value }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
    input.value = "";
    showApp(body);
  } catch (err) {
    $("login-error").textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  try { await api.post("/ui/logout"); } catch (err) { toast(err.message, "error"); }
  showLogin("Logged out.");
}

async function boot() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  window.addEventListener("hashchange", route);
  try {
    showApp(await api.get("/ui/session"));
  } catch {
    showLogin("");
  }
}

boot();
