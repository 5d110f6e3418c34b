/**
 * Signing the pane in to the CRM: Office SSO where it works (the access token is the bearer),
 * else the server's own sign-in page in an Office dialog, which hands back a short-lived,
 * revocable pane token. The pane token lives in memory and in sessionStorage (so a reload
 * of the pane in the same session does not ask again); nothing else is stored, and sign-out
 * clears it.
 */
import { _, language } from "./i18n.js";
import * as host from "./office-host.js";

const STORAGE_KEY = "regarding.paneToken";

export class NeedsSignIn extends Error {
  constructor(message, detail) {
    super(message || _("Sign in to Regarding to continue."));
    this.detail = detail || null;
  }
}

function storage() {
  try {
    return globalThis.sessionStorage;
  } catch {
    return null; // storage blocked: keep the token in memory only
  }
}

function loadStored() {
  const raw = storage() && storage().getItem(STORAGE_KEY);
  if (!raw) return null;
  try {
    const saved = JSON.parse(raw);
    if (typeof saved.token !== "string" || !saved.token) return null;
    return { kind: "pane", token: saved.token, expiresOn: saved.expires_on || null };
  } catch {
    return null;
  }
}

function store(current) {
  const s = storage();
  if (!s) return;
  if (current && current.kind === "pane") {
    s.setItem(STORAGE_KEY, JSON.stringify({ token: current.token, expires_on: current.expiresOn }));
  } else {
    s.removeItem(STORAGE_KEY);
  }
}

/** The URL of the sign-in dialog page, next to the pane (works under a path prefix). */
export function dialogUrl() {
  const url = new URL("signin", document.baseURI);
  if (globalThis.__regardingPreview) url.searchParams.set("host", "preview");
  url.searchParams.set("lang", language()); // the dialog speaks the pane's language
  return url.href;
}

export function createAuth() {
  let current = loadStored();
  let ssoUsable = host.ssoAvailable();
  let lastSsoError = null;
  let pending = null; // one sign-in at a time

  async function trySso() {
    if (!ssoUsable) return null;
    try {
      const token = await host.ssoToken();
      current = { kind: "sso", token, expiresOn: null };
      store(null);
      return token;
    } catch (exc) {
      ssoUsable = false;
      lastSsoError = exc;
      return null;
    }
  }

  /** A bearer token without asking the user anything, or NeedsSignIn. */
  async function token() {
    if (current) return current.token;
    const sso = await trySso();
    if (sso) return sso;
    throw new NeedsSignIn(null, lastSsoError && lastSsoError.message);
  }

  /** Sign in with the server's sign-in page in a dialog; resolves with the pane token. */
  function signInWithDialog() {
    if (pending) return pending;
    pending = (async () => {
      let message;
      try {
        message = await host.openDialog(dialogUrl());
      } catch (exc) {
        throw new NeedsSignIn(exc.code === "dialog_closed" || exc.code === 12006
          ? _("The sign-in window was closed before you signed in.")
          : _("The sign-in window could not open. Allow pop-ups for Outlook and try again."));
      }
      let data;
      try {
        data = JSON.parse(message);
      } catch {
        throw new NeedsSignIn(_("The sign-in window sent something unexpected. Try again."));
      }
      if (!data || typeof data.token !== "string") {
        const error = (data && data.error) || {};
        throw new NeedsSignIn(error.message || _("Signing in did not work. Try again."), error.code);
      }
      current = { kind: "pane", token: data.token, expiresOn: data.expires_on || null };
      store(current);
      return current.token;
    })();
    pending.finally(() => { pending = null; }).catch(() => {});
    return pending;
  }

  /**
   * The server refused the token (``code`` is token_expired or unauthenticated): get a new
   * one silently where possible (a fresh SSO token), else, when the user just asked for
   * something (``interactive``), through the dialog; otherwise NeedsSignIn.
   */
  async function refresh(code, { interactive = false } = {}) {
    const was = current;
    current = null;
    store(null);
    if (was && was.kind === "sso") {
      if (code === "token_expired") {
        const token = await trySso();
        if (token) return token;
      } else {
        ssoUsable = false; // the server does not accept Office sign-in: use the dialog
      }
    } else if (code === "token_expired") {
      const token = await trySso();
      if (token) return token;
    }
    if (!interactive) {
      throw new NeedsSignIn(code === "token_expired" ? _("Your sign-in expired. Sign in again to continue.")
        : _("Sign in to Regarding to continue."));
    }
    return signInWithDialog();
  }

  function forget() {
    current = null;
    store(null);
  }

  return {
    token,
    refresh,
    signInWithDialog,
    forget,
    get kind() { return current ? current.kind : null; },
    get ssoError() { return lastSsoError; },
  };
}
