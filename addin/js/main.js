/**
 * The task pane's controller: reads the open item through the Office adapter, asks the
 * server for everything it shows in one call (/api/addin/context, addresses and subject
 * only), renders the views, and carries out the user's actions (track, regarding, untrack,
 * quick create, related data). A pinned pane follows the selection (ItemChanged).
 */
import * as host from "./office-host.js";
import { createAuth, NeedsSignIn } from "./auth.js";
import { ApiError, createApi } from "./api.js";
import { append, clear, colorIndex, h, initials, safeHref } from "./dom.js";
import { _, language, languageOf, useLanguage } from "./i18n.js";
import { ic } from "./icons.js";
import { banner, button, iconButton, typeLabel } from "./views/common.js";
import { trackingCard } from "./views/tracking.js";
import { openLabel, peopleSection } from "./views/people.js";
import { relatedSection } from "./views/related.js";
import { regardingPanel, suggestions } from "./views/regarding.js";
import { CREATE_KINDS, createPanel } from "./views/create.js";
import { untrackPanel } from "./views/untrack.js";
import { signinView } from "./views/signin.js";
import { mailboxSection } from "./views/mailbox.js";

const auth = createAuth();
const api = createApi(auth);
const main = document.getElementById("pane-main");
const live = document.getElementById("pane-live");
const userArea = document.getElementById("pane-user");
const toastArea = document.getElementById("pane-toast");

const state = {
  phase: "loading", // loading ready signin error noitem outside
  officeItem: null,
  item: null, // the item as the API describes it
  ctx: null, // the context response
  related: null,
  relatedFor: null,
  relatedLoading: false,
  panel: null, // {kind, el?}
  busy: null, // what is running, shown beside the actions
  error: null, // {message, details}
  fatal: null,
  signin: { message: null, error: null, busy: false },
  autoCompleted: new Set(),
  mailbox: null, // {data, loading, busy, error}: "My mailbox", asked for on demand
};
let generation = 0;
let toastTimer = null;

// -- feedback ----------------------------------------------------------------------------------

function announce(text) {
  live.textContent = "";
  setTimeout(() => { live.textContent = text; }, 50);
}

function toast(text, link) {
  clear(toastArea);
  toastArea.append(h("div", { class: "toast", role: "status" }, ic("check"), h("span", {}, text),
    link ? h("a", { href: safeHref(link.url), target: "_blank", rel: "noopener noreferrer" }, link.text) : null));
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => clear(toastArea), 8000);
}

function errorInfo(exc) {
  if (exc instanceof ApiError) {
    const details = Object.entries(exc.fields || {}).map(([key, value]) => `${key.replace(/^(item|fields)\./, "").replace(/_/g, " ")}: ${value}`);
    return { message: exc.message, details, code: exc.code, fields: exc.fields || {} };
  }
  if (exc instanceof host.OfficeError) return { message: _("Outlook could not do that: %(reason)s", { reason: exc.message }) };
  return { message: _("Something went wrong. Try again.") };
}

// -- identity of the item ------------------------------------------------------------------------

function identity() {
  const item = state.item;
  if (item.internet_message_id) return { internet_message_id: item.internet_message_id };
  // A meeting: by its iCalendar UID once the server found it (context), else its item id.
  if (item.type === "appointment" && item.ical_uid) return { ical_uid: item.ical_uid };
  if (item.type === "appointment" && item.item_id) return { item_id: item.item_id };
  return null;
}

/** ``email`` or ``meeting``, whichever the item is (whole sentences for each: they translate differently). */
function said(email, meeting) {
  return state.item && state.item.type === "appointment" ? meeting : email;
}

// -- loading -----------------------------------------------------------------------------------

async function load() {
  const mine = ++generation;
  Object.assign(state, { panel: null, error: null, busy: null, related: null, relatedFor: null, relatedLoading: false });
  const item = host.currentItem();
  if (!item) {
    state.phase = "noitem";
    render();
    return;
  }
  state.officeItem = item;
  state.phase = "loading";
  render();
  try {
    const described = await host.describeItem(item);
    if (mine !== generation) return;
    state.item = described;
  } catch (exc) {
    if (mine !== generation) return;
    state.phase = "error";
    state.fatal = errorInfo(exc);
    render();
    return;
  }
  host.onRecipientsChanged(item, () => refreshAfterRecipients(mine));
  await fetchContext(mine);
}

async function fetchContext(mine = generation) {
  try {
    const ctx = await api.context(state.item);
    if (mine !== generation) return;
    // Outlook speaks a language the product does not: the user's own, else the organization's.
    if (!languageOf(host.displayLanguage()) && ctx.language && ctx.language !== language()) await useLanguage(ctx.language);
    if (mine !== generation) return;
    state.ctx = ctx;
    if (ctx.ical_uid) state.item.ical_uid = ctx.ical_uid; // the meeting as the sync keys it
    if (!state.relatedFor || !ctx.related.for || (ctx.related.for.type === state.relatedFor.type && ctx.related.for.id === state.relatedFor.id)) {
      state.related = ctx.related;
      state.relatedFor = ctx.related.for;
    }
    state.phase = "ready";
    render();
    completePending();
  } catch (exc) {
    if (mine !== generation) return;
    if (exc instanceof NeedsSignIn) {
      showSignIn(exc.message);
      return;
    }
    state.phase = "error";
    state.fatal = errorInfo(exc);
    render();
  }
}

let recipientsTimer = null;
function refreshAfterRecipients(mine) {
  clearTimeout(recipientsTimer);
  recipientsTimer = setTimeout(async () => {
    if (mine !== generation || state.busy || state.panel) return;
    state.item = await host.describeItem(state.officeItem);
    await fetchContext(mine);
  }, 600);
}

async function refresh() {
  state.item = { ...(await host.describeItem(state.officeItem)), item_id: state.item.item_id || (state.officeItem.itemId || null), ical_uid: state.item.ical_uid || null };
  state.relatedFor = null;
  await fetchContext(generation);
}

/** An item whose track is pending and whose content the pane can read now: finish it. */
function completePending() {
  const { tracking, can } = state.ctx;
  const id = identity();
  if (tracking.status !== "pending" || state.item.mode !== "read" || !can.track || !id || state.busy) return;
  const key = `${generation}:${JSON.stringify(id)}`; // once each time the item is opened
  if (state.autoCompleted.has(key)) return;
  state.autoCompleted.add(key);
  perform(_("Completing the pending track…"), () => track(null, { quiet: true }));
}

// -- actions -----------------------------------------------------------------------------------

async function perform(label, fn, { focus = "track-status" } = {}) {
  if (state.busy) return;
  state.busy = label;
  state.error = null;
  render();
  try {
    await fn();
  } catch (exc) {
    if (exc instanceof NeedsSignIn) {
      state.busy = null;
      showSignIn(exc.message);
      return;
    }
    state.error = errorInfo(exc);
  } finally {
    state.busy = null;
  }
  render();
  focusKey(state.error ? "error-banner" : focus);
}

function focusKey(key) {
  /** @type {HTMLElement | null} */
  const el = main.querySelector(`[data-key="${key}"]`) || document.getElementById(key);
  if (el) el.focus({ preventScroll: false });
}

async function track(regarding, { quiet = false } = {}) {
  if (state.item.mode === "compose") {
    await markPending(regarding, { viaTrack: true });
    return;
  }
  const item = state.officeItem;
  const content = await host.readContent(item, { maxAttachmentBytes: state.ctx.org.attachment_max_bytes });
  let result;
  try {
    result = await api.track({ ...state.item, ...content }, regarding);
  } catch (exc) {
    if (!(exc instanceof ApiError && exc.code === "too_large")) throw exc;
    // Too large to send at once: the server records a pending track for server-side sync.
    result = await api.track({ ...state.item, html_body: null, text_body: null, internet_headers: null, attachments: [] }, regarding);
  }
  if (result.tracking.status === "tracked") await host.addTrackedCategory(item);
  await refresh();
  const t = state.ctx.tracking;
  const text = t.status !== "tracked"
    ? said(_("Track pending: the email is tracked when the server receives it."), _("Track pending: the meeting is tracked when the server receives it."))
    : t.regarding && t.regarding.name ? _("Tracked regarding %(name)s.", { name: t.regarding.name }) : _("Tracked.");
  if (!quiet || t.status === "tracked") {
    toast(text, t.url ? { url: t.url, text: _("Open in CRM") } : null);
    announce(text);
  }
}

async function markPending(regarding, { viaTrack = false } = {}) {
  const item = state.officeItem;
  if (state.item.type === "appointment" && !state.item.item_id) {
    const id = await host.saveDraft(item); // a meeting is known by its id once sent
    if (id) state.item.item_id = id;
  }
  const described = await host.describeItem(item);
  state.item = { ...described, item_id: state.item.item_id || described.item_id };
  const result = viaTrack ? await api.track(state.item, regarding) : await api.pending(state.item, regarding);
  if (result.tracking_token && state.ctx.org.use_tracking_token) {
    await host.addTokenToSubject(item, result.tracking_token);
  }
  await refresh();
  const text = said(_("Track pending: the email is tracked when you send it."), _("Track pending: the meeting is tracked when you send it."));
  toast(text);
  announce(text);
}

async function setRegarding(ref) {
  const status = state.ctx.tracking.status;
  const id = identity();
  if (status === "not_tracked" || status === "failed") {
    await track(ref);
    return;
  }
  if (id) await api.setRegarding(id, ref);
  else await markPending(ref);
  await refresh();
  const t = state.ctx.tracking;
  const text = t.regarding ? _("Now regarding %(name)s.", { name: t.regarding.name }) : _("Regarding removed.");
  toast(text);
  announce(text);
}

async function untrack(deleteCopy) {
  const result = await api.untrack(identity(), deleteCopy);
  await host.removeTrackedCategory(state.officeItem);
  let text = said(_("Untracked. The email is no longer tracked for you."), _("Untracked. The meeting is no longer tracked for you."));
  if (result.deleted) text = said(_("Untracked, and the email was deleted from the CRM."), _("Untracked, and the meeting was deleted from the CRM."));
  else if (deleteCopy) text = _("Untracked. The CRM copy was kept because someone else owns it; only your link to it was removed.");
  await refresh();
  toast(text);
  announce(text);
}

async function showRelated(match) {
  state.relatedLoading = true;
  render();
  try {
    const data = await api.related(match.type, match.id);
    state.related = data.related;
    state.relatedFor = data.related.for;
  } catch (exc) {
    if (exc instanceof NeedsSignIn) {
      showSignIn(exc.message);
      return;
    }
    state.error = errorInfo(exc);
  } finally {
    state.relatedLoading = false;
  }
  render();
  const heading = document.getElementById("related-title");
  if (heading) heading.focus();
}

async function submitCreate(kind, data) {
  let created;
  try {
    if (kind === "task" || kind === "phone_call") {
      created = (await api.createActivity(kind, data.fields, data.regarding)).activity;
      created = { ...created, name: created.subject };
    } else {
      created = (await api.createRecord(kind, data.fields, null, data.newAccount)).record;
    }
  } catch (exc) {
    if (exc instanceof NeedsSignIn) {
      showSignIn(exc.message);
      return null;
    }
    return errorInfo(exc);
  }
  closePanel(null);
  const label = typeLabel(kind);
  const values = { type: label, name: created.name };
  toast(created.name ? _("%(type)s \"%(name)s\" created.", values) : _("%(type)s created.", values),
    created.url ? { url: created.url, text: openLabel(kind) } : null);
  announce(_("%(type)s created.", values));
  if (data.trackRegarding && !(kind === "task" || kind === "phone_call")) {
    await perform(_("Setting the regarding to the new %(type)s…", { type: label.toLowerCase() }), () => setRegarding({ type: kind, id: created.id }));
  } else {
    await perform(_("Refreshing…"), refresh);
  }
  return null;
}

// -- panels ------------------------------------------------------------------------------------

function openPanel(panel) {
  state.panel = panel;
  state.error = null;
  render();
  /** @type {HTMLElement | null} */
  const target = main.querySelector("[data-key=regarding-q]") || main.querySelector(".panel input:not([type=hidden]), .panel select") || document.getElementById("panel-title");
  if (target) target.focus();
}

function closePanel(returnKey = "track-status") {
  state.panel = null;
  render();
  if (returnKey) focusKey(returnKey);
}

function openRegarding(mode) {
  const current = state.ctx.tracking.regarding;
  const el = regardingPanel({
    title: mode === "track" ? _("Track and set regarding") : _("Set regarding"),
    purpose: mode === "track" ? said(_("Choose what this email is about; it is tracked regarding that record."),
      _("Choose what this meeting is about; it is tracked regarding that record.")) : null,
    current: mode === "track" ? null : current,
    suggested: suggestions(state.ctx, state.related),
    search: (q, types) => api.search(q, types),
    onChoose: (ref) => {
      closePanel(null);
      perform(_("Setting the regarding to %(name)s…", { name: ref.name }), () => setRegarding({ type: ref.type, id: ref.id }));
    },
    onClear: () => {
      closePanel(null);
      perform(_("Removing the regarding…"), () => setRegarding(null));
    },
    onBack: () => closePanel(returnKey),
  });
  const returnKey = mode === "track" ? "track-regarding" : "change-regarding";
  openPanel({ kind: "regarding", el, returnKey });
}

function openCreate(kind, party = null) {
  const el = createPanel({
    kind, state, party, onSubmit: submitCreate, searchAccounts: (q) => api.searchAccounts(q),
    onBack: () => closePanel(returnKey),
  });
  const returnKey = party ? `add-${kind}-${party.address}` : `create-${kind}`;
  openPanel({ kind: "create", el, returnKey });
}

const actions = {
  track: () => {
    // Trying a failed track again keeps the regarding that was chosen for it.
    const t = state.ctx.tracking;
    const keep = t.status === "failed" && t.regarding && t.regarding.name != null ? { type: t.regarding.type, id: t.regarding.id } : null;
    return perform(said(_("Tracking the email…"), _("Tracking the meeting…")), () => track(keep));
  },
  trackWithRegarding: () => openRegarding("track"),
  changeRegarding: () => openRegarding("change"),
  askUntrack: () => openPanel({ kind: "untrack", returnKey: "untrack" }),
  showRelated,
  addPerson: (party, kind) => openCreate(kind, party),
};

// -- sign-in -----------------------------------------------------------------------------------

function showSignIn(message) {
  state.phase = "signin";
  state.signin = { message, error: null, busy: false };
  state.panel = null;
  render();
}

async function signIn() {
  state.signin = { ...state.signin, busy: true, error: null };
  render();
  try {
    await auth.signInWithDialog();
  } catch (exc) {
    state.signin = { ...state.signin, busy: false, error: exc.message };
    render();
    focusKey("signin");
    return;
  }
  state.signin = { message: null, error: null, busy: false };
  await load();
}

async function signOut() {
  try {
    if (auth.kind === "pane") await api.signOut();
  } catch {
    // Signed out locally whatever the server said.
  }
  auth.forget();
  showSignIn(_("You are signed out."));
}

// -- rendering ---------------------------------------------------------------------------------

function renderUser() {
  clear(userArea);
  if (state.phase !== "ready" || !state.ctx) return;
  const user = state.ctx.user;
  userArea.append(
    h("span", { class: `avatar small c${colorIndex(user.name)}`, "aria-hidden": "true" }, initials(user.name)),
    h("span", { class: "user-name", title: user.email }, user.name),
    iconButton(_("Sign out"), "signout", signOut, { key: "signout" }));
}

async function mailboxCall(label, fn) {
  const shown = Boolean(state.mailbox && state.mailbox.data);
  state.mailbox = { ...(state.mailbox || {}), error: null, [shown ? "busy" : "loading"]: label };
  render();
  try {
    state.mailbox = { data: await fn() };
  } catch (exc) {
    if (exc instanceof NeedsSignIn) return showSignIn(exc.message);
    state.mailbox = { ...state.mailbox, loading: null, busy: null, error: errorInfo(exc).message };
  }
  render();
  focusKey(state.mailbox.data ? "mailbox-title" : "mailbox-show");
}

const mailboxActions = {
  onShow: () => mailboxCall(_("Loading your mailbox…"), () => api.myMailbox()),
  onConnect: () => mailboxCall(_("Connecting your mailbox…"), () => api.mailboxAction("connect")),
  onApprove: () => mailboxCall(_("Approving…"), () => api.mailboxAction("approve")),
  onDisconnect: () => mailboxCall(_("Disconnecting…"), () => api.mailboxAction("disconnect")),
};

function createSection() {
  const can = state.ctx.can;
  const kinds = CREATE_KINDS.filter(([, privilege]) => can[privilege]);
  if (!kinds.length) return null;
  return h("section", { class: "section", "aria-labelledby": "create-title" },
    h("div", { class: "section-head" }, h("h2", { id: "create-title" }, _("Create"))),
    h("div", { class: "create-grid" }, kinds.map(([kind]) =>
      button(typeLabel(kind), () => openCreate(kind), { iconName: kind, key: `create-${kind}`, disabled: Boolean(state.busy) }))));
}

function subjectLine() {
  const item = state.item;
  const icon = ic(item.type === "appointment" ? "appointment" : "email");
  return h("div", { class: "item-line" }, icon,
    h("p", { class: "item-subject", title: item.subject }, item.subject || _("(no subject)")),
    item.mode === "compose" ? h("span", { class: "badge badge-neutral" }, _("Draft")) : null);
}

function renderReady() {
  if (state.panel) {
    if (state.panel.kind === "untrack") {
      main.append(untrackPanel({
        item: state.item, tracking: state.ctx.tracking, busy: Boolean(state.busy),
        onConfirm: (deleteCopy) => {
          closePanel(null);
          perform(_("Untracking…"), () => untrack(deleteCopy));
        },
        onBack: () => closePanel("untrack"),
      }));
    } else {
      main.append(state.panel.el);
    }
    return;
  }
  append(main, [
    subjectLine(),
    state.error ? h("div", { tabindex: "-1", "data-key": "error-banner", class: "banner-wrap" },
      banner(state.error.message, { details: state.error.details, onDismiss: () => { state.error = null; render(); } })) : null,
    trackingCard(state, actions),
    peopleSection(state, actions),
    relatedSection(state),
    createSection(),
    mailboxSection(state.mailbox, mailboxActions),
    h("footer", { class: "pane-footer" },
      h("a", { href: new URL("../", document.baseURI).href, target: "_blank", rel: "noopener noreferrer" }, ic("open"), " ", _("Open Regarding"))),
  ]);
}

function render() {
  const focused = /** @type {HTMLElement | null} */ (document.activeElement);
  const active = focused && focused.dataset ? focused.dataset.key : null;
  clear(main);
  main.setAttribute("aria-busy", state.phase === "loading" ? "true" : "false");
  renderUser();
  if (state.phase === "loading") {
    main.append(h("div", { class: "skeleton", role: "status", "aria-label": _("Loading") },
      h("div", { class: "sk sk-line" }), h("div", { class: "sk sk-card" }), h("div", { class: "sk sk-card short" })));
  } else if (state.phase === "noitem") {
    main.append(h("div", { class: "empty-state" }, ic("email", "big"),
      h("h2", {}, _("Select an email or meeting")),
      h("p", {}, _("Regarding shows who is who in the CRM and lets you track the item."))));
  } else if (state.phase === "outside") {
    main.append(h("div", { class: "empty-state" },
      ic("email", "big"),
      h("h2", {}, _("Open Regarding from Outlook")),
      h("p", {}, _("This page is the Outlook add-in's task pane: it works beside an email or meeting in Outlook.")),
      h("p", {}, h("a", { class: "btn btn-primary", href: new URL("preview", document.baseURI).href, dataset: { key: "open-preview" } },
        ic("open"), h("span", { class: "btn-label" }, _("Try it in the add-in preview"))))));
  } else if (state.phase === "signin") {
    main.append(signinView({ ...state.signin, onSignIn: signIn }));
  } else if (state.phase === "error") {
    const fatal = state.fatal || { message: _("Something went wrong.") };
    main.append(h("div", { class: "empty-state" },
      banner(fatal.message, { details: fatal.details }),
      button(_("Try again"), load, { kind: "primary", iconName: "refresh", key: "retry" })));
  } else {
    renderReady();
  }
  if (active) {
    /** @type {HTMLElement | null} */
    const again = main.querySelector(`[data-key="${CSS.escape(active)}"]`) || userArea.querySelector(`[data-key="${CSS.escape(active)}"]`);
    if (again && again !== document.activeElement) again.focus({ preventScroll: true });
  }
}

// -- start -------------------------------------------------------------------------------------

/** Not in Outlook (Office.js missing, or loaded with no host): say where the pane belongs. */
async function outsideOutlook() {
  await speak(navigator.language);
  state.phase = "outside";
  render();
}

/** The pane's language (its words loaded before anything is rendered in it), and the page's own words. */
async function speak(tag) {
  await useLanguage(languageOf(tag), tag);
  document.querySelector(".skip").textContent = _("Skip to content");
  const waiting = document.querySelector(".loading-text");
  if (waiting) waiting.textContent = _("Loading…");
}

async function boot() {
  try {
    await host.ready();
  } catch {
    await outsideOutlook();
    return;
  }
  if (!host.currentItem() && !(globalThis.Office && Office.context && Office.context.mailbox)) {
    await outsideOutlook();
    return;
  }
  await speak(host.displayLanguage());
  host.onItemChanged(() => load());
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.panel && state.panel.kind !== "regarding") {
      event.preventDefault();
      closePanel(state.panel.returnKey);
    }
  });
  await load();
}

boot();
