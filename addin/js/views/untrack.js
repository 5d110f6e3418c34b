/**
 * Untrack, confirmed: the item stays in the mailbox; the user chooses whether the CRM copy
 * should be deleted too. The server deletes it only when the user owns it (and may delete
 * it); otherwise only the user's link to it is removed and the record is kept.
 */
import { h } from "../dom.js";
import { _ } from "../i18n.js";
import { button, checkbox, panelHeader } from "./common.js";

export function untrackPanel({ item, tracking, onConfirm, onBack, busy }) {
  const meeting = item.type === "appointment";
  const form = h("form", { class: "untrack-form", novalidate: true },
    h("p", {}, meeting ? _("The meeting stays in your mailbox and is no longer tracked for you.")
      : _("The email stays in your mailbox and is no longer tracked for you.")),
    tracking.status === "tracked" ? checkbox({
      name: "delete_copy",
      label: meeting ? _("Also delete the meeting from the CRM") : _("Also delete the email from the CRM"),
      hint: _("Only if you own it. Someone else's copy is kept; only your link to it is removed."),
    }) : null,
    h("div", { class: "actions form-actions" },
      button(busy ? _("Untracking…") : _("Untrack"), null, { kind: "danger", type: "submit", key: "untrack-confirm", disabled: busy }),
      button(_("Cancel"), onBack, { key: "untrack-cancel", disabled: busy })));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const box = form.querySelector("input[name=delete_copy]");
    onConfirm(Boolean(box && box.checked));
  });
  return h("div", { class: "panel", role: "region", "aria-labelledby": "panel-title" },
    panelHeader(meeting ? _("Untrack this meeting?") : _("Untrack this email?"), onBack), form);
}
