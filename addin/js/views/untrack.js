/**
 * Untrack, confirmed: the item stays in the mailbox; the user chooses whether the CRM copy
 * should be deleted too. The server deletes it only when the user owns it (and may delete
 * it); otherwise only the user's link to it is removed and the record is kept.
 */
import { h } from "../dom.js";
import { button, checkbox, panelHeader } from "./common.js";

export function untrackPanel({ item, tracking, onConfirm, onBack, busy }) {
  const noun = item.type === "appointment" ? "meeting" : "email";
  const form = h("form", { class: "untrack-form", novalidate: true },
    h("p", {}, `The ${noun} stays in your mailbox and is no longer tracked for you.`),
    tracking.status === "tracked" ? checkbox({
      name: "delete_copy",
      label: `Also delete the ${noun} from the CRM`,
      hint: "Only if you own it. Someone else's copy is kept; only your link to it is removed.",
    }) : null,
    h("div", { class: "actions form-actions" },
      button(busy ? "Untracking…" : "Untrack", null, { kind: "danger", type: "submit", key: "untrack-confirm", disabled: busy }),
      button("Cancel", onBack, { key: "untrack-cancel", disabled: busy })));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const box = form.querySelector("input[name=delete_copy]");
    onConfirm(Boolean(box && box.checked));
  });
  return h("div", { class: "panel", role: "region", "aria-labelledby": "panel-title" },
    panelHeader(`Untrack this ${noun}?`, onBack), form);
}
