/**
 * The Office adapter: everything the pane asks of Outlook through Office.js, as promises.
 *
 * - describeItem(): the open item in the add-in API's shape (addresses, subject, ids, times;
 *   never the body), for read and compose, messages and meetings.
 * - readContent(): the body, internet headers and attachments, read only when the user tracks.
 * - categories, the subject token in compose, saving a draft to get its id.
 * - sign-in: Office SSO (Office.auth.getAccessToken) and the dialog (displayDialogAsync).
 * - the ItemChanged event of a pinned pane.
 *
 * Requirement sets are checked at run time (isSetSupported) so older Outlooks degrade
 * instead of failing: categories and headers need Mailbox 1.8, SSO IdentityAPI 1.3.
 */

import { _ } from "./i18n.js";

export const TRACKED_CATEGORY = "Tracked to Regarding";

/**
 * The item Outlook gives the pane, in any of its four shapes (checked against
 * @types/office-js by `tsc -p tsconfig.json`).
 * @typedef {Office.MessageRead | Office.MessageCompose | Office.AppointmentRead | Office.AppointmentCompose} OfficeItem
 * @typedef {Office.MessageCompose | Office.AppointmentCompose} ComposeItem
 */

export class OfficeError extends Error {
  /**
   * @param {string | number} code
   * @param {string} [message]
   */
  constructor(code, message) {
    super(message || `Office error ${code}`);
    this.code = code;
  }
}

/** @returns {typeof Office} */
function office() {
  return globalThis.Office;
}

export function isAvailable() {
  return typeof office() !== "undefined";
}

/** Resolves when Office.js is ready (the host may be null outside Outlook). */
export function ready(timeoutMs = 15000) {
  if (!isAvailable()) return Promise.reject(new OfficeError("no_office", _("Office.js did not load.")));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new OfficeError("timeout", _("Outlook did not answer."))), timeoutMs);
    office().onReady((info) => {
      clearTimeout(timer);
      resolve(info || {});
    });
  });
}

export function supports(set, version) {
  try {
    return Boolean(office().context.requirements.isSetSupported(set, version));
  } catch {
    return false;
  }
}

/** Outlook's display language, such as "cs-CZ" ("" where the host does not say). */
export function displayLanguage() {
  const context = isAvailable() ? office().context : null;
  return (context && typeof context.displayLanguage === "string" && context.displayLanguage) || "";
}

function mailbox() {
  return office().context && office().context.mailbox;
}

/** @returns {OfficeItem | null} */
export function currentItem() {
  const box = mailbox();
  return box ? box.item : null;
}

export function userAddress() {
  const box = mailbox();
  return (box && box.userProfile && box.userProfile.emailAddress) || "";
}

export function userName() {
  const box = mailbox();
  return (box && box.userProfile && box.userProfile.displayName) || "";
}

/**
 * fn(callback) in Office's async style → a promise of the result's value.
 * @template T
 * @param {(callback: (result: Office.AsyncResult<T>) => void) => void} fn
 * @returns {Promise<T>}
 */
function call(fn) {
  return new Promise((resolve, reject) => {
    try {
      fn((result) => {
        if (result && result.status === office().AsyncResultStatus.Succeeded) resolve(result.value);
        else {
          const error = result && result.error;
          reject(new OfficeError((error && error.code) || "failed", (error && error.message) || _("Outlook could not do that.")));
        }
      });
    } catch (exc) {
      reject(new OfficeError("exception", exc && exc.message));
    }
  });
}

function person(details) {
  if (!details) return null;
  return { name: String(details.displayName || ""), address: String(details.emailAddress || "") };
}

function people(list) {
  return Array.isArray(list) ? list.map(person).filter(Boolean) : [];
}

function iso(value) {
  if (!value) return null;
  const date = value instanceof Date ? value : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/**
 * A read-mode property or a compose-mode getter (``x.getAsync``), whichever the item has.
 * @param {OfficeItem} item
 * @param {string} name
 * @param {{since?: string}} [options]
 * @returns {Promise<any>}
 */
async function field(item, name, { since } = {}) {
  const value = item[name];
  if (value && typeof value.getAsync === "function") {
    if (since && !supports("Mailbox", since)) return null;
    return call((cb) => value.getAsync(cb));
  }
  return value === undefined ? null : value;
}

/**
 * @param {OfficeItem | null} item
 * @returns {item is ComposeItem}
 */
export function isCompose(item) {
  return Boolean(item && item.subject && typeof item.subject !== "string" && typeof item.subject.getAsync === "function");
}

/** @param {OfficeItem} item */
export function isAppointment(item) {
  const types = office().MailboxEnums && office().MailboxEnums.ItemType;
  return item.itemType === ((types && types.Appointment) || "appointment");
}

/**
 * The item as the add-in API describes it: only addresses, subject, ids and times.
 * @param {OfficeItem | null} [item]
 */
export async function describeItem(item = currentItem()) {
  if (!item) return null;
  const compose = isCompose(item);
  const appointment = isAppointment(item);
  const out = {
    type: appointment ? "appointment" : "message",
    mode: compose ? "compose" : "read",
    internet_message_id: "internetMessageId" in item ? item.internetMessageId || null : null,
    conversation_id: "conversationId" in item ? item.conversationId || null : null,
    // Read items have an id; a draft has one once saved (getItemIdAsync).
    item_id: ("itemId" in item && item.itemId) || (compose ? await draftId(item) : null),
    subject: String((await field(item, "subject")) || ""),
    from: null, to: [], cc: [], organizer: null, required_attendees: [], optional_attendees: [],
    start: null, end: null, location: null,
    user_address: userAddress(),
    mailbox_owner: await sharedOwner(item),
  };
  if (appointment) {
    const [organizer, required, optional, start, end, location] = await Promise.all([
      field(item, "organizer", { since: "1.7" }), field(item, "requiredAttendees"),
      field(item, "optionalAttendees"), field(item, "start"), field(item, "end"),
      field(item, "location"),
    ]);
    Object.assign(out, {
      organizer: person(organizer) || (compose ? { name: userName(), address: userAddress() } : null),
      required_attendees: people(required), optional_attendees: people(optional),
      start: iso(start), end: iso(end), location: location ? String(location) : null,
    });
  } else {
    const [from, to, cc] = await Promise.all([
      field(item, "from", { since: "1.7" }), field(item, "to"), field(item, "cc")]);
    out.from = person(from) || (compose ? { name: userName(), address: userAddress() } : null);
    out.to = people(to);
    out.cc = people(cc);
  }
  return out;
}

/**
 * The owner of the mailbox the item is in, when it is a shared folder (delegate access) or
 * a shared mailbox and not the user's own (getSharedPropertiesAsync, Mailbox 1.8); else null.
 * @param {OfficeItem} item
 * @returns {Promise<string | null>}
 */
async function sharedOwner(item) {
  if (!("getSharedPropertiesAsync" in item) || typeof item.getSharedPropertiesAsync !== "function" || !supports("Mailbox", "1.8")) {
    return null;
  }
  try {
    const shared = await call((cb) => item.getSharedPropertiesAsync(cb));
    const owner = shared && shared.owner ? String(shared.owner) : "";
    return owner && owner.toLowerCase() !== userAddress().toLowerCase() ? owner : null;
  } catch {
    return null; // not shared: the item is in the user's own mailbox
  }
}

function base64OfText(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/**
 * @param {OfficeItem} item
 * @param {Office.AttachmentDetails} att
 * @param {number} maxBytes
 */
async function attachmentContent(item, att, maxBytes) {
  const meta = { name: String(att.name || "attachment"), content_type: String(att.contentType || "application/octet-stream"),
    size: Number(att.size) || 0, content_base64: null, is_inline: Boolean(att.isInline) };
  const readable = att.attachmentType !== "cloud" && meta.size <= maxBytes
    && typeof item.getAttachmentContentAsync === "function" && supports("Mailbox", "1.8");
  if (!readable) return meta;
  try {
    const content = await call((cb) => item.getAttachmentContentAsync(att.id, cb));
    const formats = office().MailboxEnums.AttachmentContentFormat;
    if (content.format === formats.Base64) meta.content_base64 = content.content;
    else if (content.format === formats.Eml || content.format === formats.ICalendar) {
      meta.content_base64 = base64OfText(content.content);
      if (content.format === formats.Eml) meta.content_type = "message/rfc822";
    }
  } catch {
    // Kept as metadata: the sync engine can fetch what the pane could not.
  }
  if (meta.content_base64 && meta.content_base64.length * 0.75 > maxBytes + 2) meta.content_base64 = null;
  return meta;
}

/**
 * The item's content for Track: HTML body (text if HTML fails), internet headers where
 * supported, attachments within the org's size limit. Whatever cannot be read is left out
 * (null); without a body the server records the track as pending for server-side sync.
 */
/**
 * @param {OfficeItem} item
 * @param {{maxAttachmentBytes?: number}} [options]
 */
export async function readContent(item, { maxAttachmentBytes = 0 } = {}) {
  const coercion = office().CoercionType;
  const content = { html_body: null, text_body: null, internet_headers: null, attachments: [] };
  try {
    content.html_body = await call((cb) => item.body.getAsync(coercion.Html, cb));
  } catch {
    try {
      content.text_body = await call((cb) => item.body.getAsync(coercion.Text, cb));
    } catch {
      // No body: tracked later by server-side sync.
    }
  }
  if (!isAppointment(item) && "getAllInternetHeadersAsync" in item && supports("Mailbox", "1.8") && typeof item.getAllInternetHeadersAsync === "function") {
    try {
      content.internet_headers = await call((cb) => item.getAllInternetHeadersAsync(cb));
    } catch {
      content.internet_headers = null;
    }
  }
  const attachments = "attachments" in item && Array.isArray(item.attachments) ? item.attachments : [];
  for (const att of attachments) {
    content.attachments.push(await attachmentContent(item, att, maxAttachmentBytes));
  }
  return content;
}

// -- categories (Mailbox 1.8) ---------------------------------------------------------------

/** @param {OfficeItem | null} item */
export function canCategorize(item) {
  return supports("Mailbox", "1.8") && Boolean(item && item.categories);
}

async function ensureMasterCategory() {
  const master = mailbox().masterCategories;
  if (!master) return;
  const existing = (await call((cb) => master.getAsync(cb))) || [];
  if (existing.some((c) => c.displayName === TRACKED_CATEGORY)) return;
  const colors = office().MailboxEnums.CategoryColor;
  await call((cb) => master.addAsync([{ displayName: TRACKED_CATEGORY, color: colors.Preset9 }], cb));
}

/** Mark the item 'Tracked to Regarding' (quietly does nothing where unsupported). */
/** @param {OfficeItem | null} [item] */
export async function addTrackedCategory(item = currentItem()) {
  if (!canCategorize(item)) return false;
  try {
    await ensureMasterCategory();
    const current = (await call((cb) => item.categories.getAsync(cb))) || [];
    if (!current.some((c) => c.displayName === TRACKED_CATEGORY)) {
      await call((cb) => item.categories.addAsync([TRACKED_CATEGORY], cb));
    }
    return true;
  } catch {
    return false;
  }
}

/** @param {OfficeItem | null} [item] */
export async function removeTrackedCategory(item = currentItem()) {
  if (!canCategorize(item)) return false;
  try {
    await call((cb) => item.categories.removeAsync([TRACKED_CATEGORY], cb));
    return true;
  } catch {
    return false;
  }
}

// -- compose ---------------------------------------------------------------------------------

/** Append the tracking token to the draft's subject (unless it is there already). */
/**
 * @param {OfficeItem} item
 * @param {string} token
 */
export async function addTokenToSubject(item, token) {
  if (!token || !isCompose(item)) return false;
  const subject = String((await call((cb) => item.subject.getAsync(cb))) || "");
  if (subject.includes(token)) return false;
  await call((cb) => item.subject.setAsync(subject ? `${subject} ${token}` : token, cb));
  return true;
}

/** A saved draft's id (Mailbox 1.8), or null while it has never been saved. */
/** @param {ComposeItem} item */
async function draftId(item) {
  if (typeof item.getItemIdAsync !== "function" || !supports("Mailbox", "1.8")) return null;
  try {
    return (await call((cb) => item.getItemIdAsync(cb))) || null;
  } catch {
    return null;
  }
}

/** Save the draft (a meeting needs an id before it can be tracked when sent). */
/** @param {OfficeItem} item */
export async function saveDraft(item) {
  if (!isCompose(item) || typeof item.saveAsync !== "function") return null;
  try {
    return await call((cb) => item.saveAsync(cb));
  } catch {
    return null;
  }
}

// -- the pinned pane -------------------------------------------------------------------------

/** @param {(event: any) => void} handler */
export function onItemChanged(handler) {
  const box = mailbox();
  if (!box || typeof box.addHandlerAsync !== "function" || !supports("Mailbox", "1.5")) return;
  box.addHandlerAsync(office().EventType.ItemChanged, handler, () => {});
}

/** Compose: the recipients changed (Mailbox 1.7), so who-is-who should be looked up again. */
/**
 * @param {OfficeItem} item
 * @param {(event: any) => void} handler
 */
export function onRecipientsChanged(item, handler) {
  if (!isCompose(item) || typeof item.addHandlerAsync !== "function" || !supports("Mailbox", "1.7")) return;
  const type = office().EventType.RecipientsChanged;
  if (type) item.addHandlerAsync(type, handler, () => {});
}

// -- sign-in ---------------------------------------------------------------------------------

export function ssoAvailable() {
  return isAvailable() && Boolean(office().auth && office().auth.getAccessToken) && supports("IdentityAPI", "1.3");
}

/** An Office SSO access token for this add-in (Office caches and renews it). */
export async function ssoToken() {
  try {
    return await office().auth.getAccessToken({ allowSignInPrompt: true, allowConsentPrompt: true });
  } catch (exc) {
    throw new OfficeError((exc && exc.code) || "sso_failed", (exc && exc.message) || _("Office sign-in failed."));
  }
}

/**
 * Open ``url`` in an Office dialog and resolve with the first message the page sends
 * (Office.context.ui.messageParent); rejects if it cannot open or the user closes it.
 */
/**
 * @param {string} url
 * @param {{height?: number, width?: number}} [size]
 * @returns {Promise<string>}
 */
export function openDialog(url, { height = 60, width = 30 } = {}) {
  return new Promise((resolve, reject) => {
    const ui = office().context && office().context.ui;
    if (!ui || typeof ui.displayDialogAsync !== "function") {
      reject(new OfficeError("no_dialog", _("This Outlook cannot open the sign-in window.")));
      return;
    }
    ui.displayDialogAsync(url, { height, width }, (result) => {
      if (result.status !== office().AsyncResultStatus.Succeeded) {
        const error = result.error;
        reject(new OfficeError((error && error.code) || "dialog_failed", (error && error.message) || _("The sign-in window could not open.")));
        return;
      }
      const dialog = result.value;
      let settled = false;
      dialog.addEventHandler(office().EventType.DialogMessageReceived, (arg) => {
        if (settled) return;
        settled = true;
        try { dialog.close(); } catch { /* already closed */ }
        resolve(String(("message" in arg && arg.message) || ""));
      });
      dialog.addEventHandler(office().EventType.DialogEventReceived, (arg) => {
        if (settled) return;
        settled = true;
        reject(new OfficeError(("error" in arg && arg.error) || "dialog_closed", _("The sign-in window was closed.")));
      });
    });
  });
}
