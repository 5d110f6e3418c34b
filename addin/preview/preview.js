/**
 * The preview page: a list of sample items and a reading pane (a tiny mail reader), playing
 * Outlook's part for the real task pane in the iframe beside it. The pane's stand-in for
 * Office.js (office-standin.js) reads the selected item through window.RegardingPreview and
 * is told when the selection changes (Outlook's ItemChanged); the sign-in dialog opens here,
 * over the page, in an iframe. Everything is rendered with text nodes.
 */

const user = JSON.parse(document.getElementById("pv-user").textContent);
// The sample inbox is fixed: the first set the server gave is kept (with what the user did
// to it: a sent draft, a changed subject) until "Reset the preview".
const STORE_KEY = `regarding.preview.v1:${user.emailAddress}`;
const samples = kept() || JSON.parse(document.getElementById("pv-samples").textContent);
const list = document.getElementById("pv-list");
const reader = document.getElementById("pv-reader");
const dialogLayer = document.getElementById("pv-dialog");
const dialogFrame = /** @type {HTMLIFrameElement} */ (document.getElementById("pv-dialog-frame"));
const dialogClose = document.getElementById("pv-dialog-close");

const FOLDERS = [["Inbox", "Inbox"], ["Calendar", "Calendar"], ["Drafts", "Drafts"], ["Sent", "Sent Items"]];
const listeners = new Set();
const categories = new Map(); // item key → Set of category names (the mailbox's side)
let selected = samples[0] ? samples[0].key : null;

function kept() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE_KEY) || "null");
    return Array.isArray(saved) && saved.length ? saved : null;
  } catch {
    return null; // storage blocked or spoilt: the server's samples
  }
}

function keep() {
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify(samples));
  } catch {
    // Storage blocked: the samples last as long as the page.
  }
}

/** @returns {HTMLElement} */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function when(iso, withTime = true) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : new Intl.DateTimeFormat(undefined,
    withTime ? { dateStyle: "medium", timeStyle: "short" } : { dateStyle: "medium" }).format(d);
}

function who(p) {
  if (!p) return "";
  return p.displayName && p.displayName !== p.emailAddress ? `${p.displayName} <${p.emailAddress}>` : p.emailAddress;
}

function current() {
  return samples.find((s) => s.key === selected) || null;
}

// -- the list --------------------------------------------------------------------------------

function renderList() {
  list.replaceChildren();
  for (const [folder, label] of FOLDERS) {
    const items = samples.filter((s) => s.folder === folder);
    if (!items.length) continue;
    const group = el("ul", { class: "pv-group", "aria-labelledby": `pv-folder-${folder}` });
    list.append(el("h2", { class: "pv-folder", id: `pv-folder-${folder}` }, label), group);
    for (const s of items) {
      const sender = s.type === "appointment" ? (s.organizer && s.organizer.displayName) : s.mode === "compose"
        ? `To: ${(s.to || []).map((p) => p.displayName || p.emailAddress).join(", ")}` : s.from && s.from.displayName;
      const tags = categories.get(s.key);
      group.append(el("li", {},
        el("button", {
          type: "button", class: `pv-item${s.key === selected ? " selected" : ""}`,
          "aria-current": s.key === selected ? "true" : null, "data-key": s.key,
          onclick: () => select(s.key),
        },
        el("span", { class: "pv-item-from" }, sender || ""),
        el("span", { class: "pv-item-subject" }, s.subject || "(no subject)"),
        el("span", { class: "pv-item-meta" },
          s.type === "appointment" ? when(s.start) : when(s.date, false),
          tags && tags.size ? el("span", { class: "pv-cat" }, [...tags].join(", ")) : null))));
    }
  }
}

// -- the reading pane ------------------------------------------------------------------------

function line(label, value) {
  return value ? el("div", { class: "pv-line" }, el("span", { class: "pv-label" }, `${label}:`), " ", value) : null;
}

function renderReader() {
  reader.replaceChildren();
  const s = current();
  if (!s) {
    reader.append(el("p", { class: "pv-empty" }, "No sample items."));
    return;
  }
  const tags = categories.get(s.key);
  if (s.mode === "compose") {
    const subject = el("input", { class: "pv-input", id: "pv-subject", value: s.subject || "", "aria-label": "Subject",
      oninput: (e) => { s.subject = e.target.value; } });
    const to = el("input", { class: "pv-input", id: "pv-to", value: (s.to || []).map((p) => p.emailAddress).join("; "), "aria-label": "To",
      onchange: (e) => {
        s.to = e.target.value.split(/[;,]/).map((a) => a.trim()).filter(Boolean).map((a) => ({ displayName: a, emailAddress: a }));
        renderList();
        notify("recipients");
      } });
    reader.append(
      el("p", { class: "pv-draft" }, "Draft"),
      el("label", { class: "pv-field" }, el("span", {}, "To"), to),
      el("label", { class: "pv-field" }, el("span", {}, "Subject"), subject),
      el("div", { class: "pv-body pv-compose-body", "aria-label": "Message" }, s.bodyText || ""),
      el("div", { class: "pv-actions" },
        el("button", { type: "button", class: "pv-send", id: "pv-send", onclick: () => send(s) }, "Send"),
        el("p", { class: "pv-hint" }, "Track it in the pane, then send it: the add-in tracks the sent email.")));
    return;
  }
  reader.append(el("h1", { class: "pv-subject" }, s.subject || "(no subject)"));
  if (tags && tags.size) reader.append(el("p", {}, el("span", { class: "pv-cat" }, [...tags].join(", "))));
  if (s.type === "appointment") {
    reader.append(el("div", { class: "pv-head" },
      line("When", `${when(s.start)} – ${when(s.end)}`),
      line("Where", s.location),
      line("Organizer", who(s.organizer)),
      line("Required", (s.requiredAttendees || []).map(who).join("; ")),
      line("Optional", (s.optionalAttendees || []).map(who).join("; "))));
  } else {
    reader.append(el("div", { class: "pv-head" },
      line("From", who(s.from)),
      line("To", (s.to || []).map(who).join("; ")),
      line("Cc", (s.cc || []).map(who).join("; ")),
      line("Sent", when(s.date))));
  }
  if (s.attachments && s.attachments.length) {
    reader.append(el("ul", { class: "pv-attachments", "aria-label": "Attachments" },
      s.attachments.map((a) => el("li", {}, a.name, el("span", { class: "pv-muted" }, ` ${Math.round(a.size / 1024)} KB`)))));
  }
  reader.append(el("div", { class: "pv-body" }, s.bodyText || ""));
}

/** "Send" the draft: it becomes a sent email with a Message-ID, as Outlook would file it. */
function send(draft) {
  const domain = (user.emailAddress.split("@")[1] || "example.com").toLowerCase();
  const id = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now())).replace(/-/g, "");
  const sent = {
    ...draft, key: `sent-${id.slice(0, 12)}`, folder: "Sent", mode: "read", itemId: `preview-sent-${id}`,
    internetMessageId: draft.sentMessageId || `<${id}@mail.${domain}>`, from: { ...user }, date: new Date().toISOString(),
  };
  samples.splice(samples.indexOf(draft), 1, sent);
  keep();
  selected = null;
  select(sent.key);
}

function select(key) {
  if (key === selected) return;
  selected = key;
  renderList();
  renderReader();
  notify("item");
}

function notify(what) {
  for (const fn of listeners) {
    try {
      fn(what);
    } catch (exc) {
      console.error(exc);
    }
  }
}

// -- the sign-in dialog ------------------------------------------------------------------------

let dialogHandlers = null;

function openDialog(url, handlers) {
  const target = new URL(url, location.href);
  if (target.origin !== location.origin) throw new Error("The preview opens dialogs of this site only.");
  dialogHandlers = handlers;
  dialogFrame.src = target.href;
  dialogLayer.hidden = false;
  dialogClose.focus();
  return {
    close() {
      dialogHandlers = null;
      dialogLayer.hidden = true;
      dialogFrame.src = "about:blank";
      document.getElementById("pv-pane").focus();
    },
  };
}

window.addEventListener("message", (event) => {
  if (event.origin !== location.origin || event.source !== dialogFrame.contentWindow) return;
  if (!event.data || event.data.__officeDialog !== true || !dialogHandlers) return;
  dialogHandlers.onMessage(String(event.data.message));
});

function closeByUser() {
  const handlers = dialogHandlers;
  dialogHandlers = null;
  dialogLayer.hidden = true;
  dialogFrame.src = "about:blank";
  if (handlers) handlers.onClosed();
}
dialogClose.addEventListener("click", closeByUser);
dialogLayer.addEventListener("keydown", (event) => {
  if (event.key === "Escape") closeByUser();
});

// -- what the stand-in sees --------------------------------------------------------------------

window.RegardingPreview = {
  user,
  currentItem: current,
  subscribe(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
  setSubject(key, value) {
    const s = samples.find((x) => x.key === key);
    if (!s) return;
    s.subject = value;
    keep();
    if (key === selected) renderReader();
    renderList();
  },
  categories(key) {
    if (!categories.has(key)) categories.set(key, new Set());
    return categories.get(key);
  },
  categoriesChanged() {
    renderList();
    renderReader();
  },
  openDialog,
};

// -- reset -------------------------------------------------------------------------------------

const resetButton = /** @type {HTMLButtonElement} */ (document.getElementById("pv-reset"));
const resetStatus = document.getElementById("pv-reset-status");
resetButton.addEventListener("click", async () => {
  resetButton.disabled = true;
  resetStatus.textContent = "Resetting the preview…";
  let response = null;
  try {
    response = await fetch(new URL("preview/reset", location.href), {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: { Accept: "application/json", "X-CSRFToken": document.querySelector("meta[name=csrf-token]").getAttribute("content") },
    });
  } catch {
    response = null;
  }
  if (!response || !response.ok) {
    resetButton.disabled = false;
    resetStatus.textContent = "The preview could not be reset. Try again.";
    return;
  }
  try {
    localStorage.removeItem(STORE_KEY);
  } catch {
    // Nothing was kept.
  }
  location.reload();
});

keep();
renderList();
renderReader();
