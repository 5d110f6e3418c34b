/**
 * The sign-in dialog's script: once the user is signed in to the CRM (this page needs a
 * session), ask the server for a pane token and pass it to the task pane with
 * Office.context.ui.messageParent — to a parent on this origin only (DialogApi 1.2's
 * targetOrigin where supported; Office's same-origin rule otherwise).
 *
 * It speaks Outlook's display language with the pane's words (js/i18n.js); the pane opens the
 * page with its language (?lang=), so the server writes the page in the same one.
 */
import { _, languageOf, useLanguage } from "./js/i18n.js";

const statusLine = document.getElementById("dialog-status");

function say(text) {
  statusLine.textContent = text;
}

function send(payload) {
  const ui = Office.context.ui;
  const message = JSON.stringify(payload);
  const cross = Office.context.requirements && Office.context.requirements.isSetSupported("DialogApi", "1.2");
  if (cross) ui.messageParent(message, { targetOrigin: window.location.origin });
  else ui.messageParent(message);
}

async function issue() {
  const csrf = document.querySelector("meta[name=csrf-token]").content;
  let response;
  try {
    response = await fetch(window.location.pathname, {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: { "X-CSRFToken": csrf, Accept: "application/json" },
    });
  } catch {
    return { error: { code: "network", message: _("Could not reach the CRM server.") } };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.ok && data && typeof data.token === "string") {
    return { token: data.token, expires_on: data.expires_on };
  }
  return { error: (data && data.error) || { code: "error", message: _("Signing in did not work.") } };
}

Office.onReady(async () => {
  const display = Office.context && Office.context.displayLanguage;
  await useLanguage(languageOf(display) || document.documentElement.lang, display || null);
  if (!Office.context || !Office.context.ui || typeof Office.context.ui.messageParent !== "function") {
    say(_("Open this page from the Regarding add-in in Outlook."));
    return;
  }
  const result = await issue();
  say(result.token ? _("Signed in. Returning to Outlook…") : result.error.message);
  send(result);
});
