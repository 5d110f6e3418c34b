/**
 * "My mailbox": the signed-in user's own mailbox and its server-side sync, asked for only
 * when the user opens the section (no call on the first paint). Shows whether it is
 * connected (delegated access granted through Office sign-in), approved and syncing, its
 * last sync and open alerts, and offers what the server allows: connect, approve one's own
 * address (with the privilege), disconnect; or says why connecting is not possible.
 */
import { formatDate, h } from "../dom.js";
import { _ } from "../i18n.js";
import { badge, banner, button, section, spinner } from "./common.js";

function statusLine(box) {
  return h("p", { class: "mailbox-status", dataset: { key: "mailbox-status" } },
    badge(box.connected ? _("Connected") : _("Not connected"), box.connected ? "opportunity" : "missing"), " ",
    badge(box.approved ? _("Approved") : _("Waiting for approval"), box.approved ? "opportunity" : "missing"), " ",
    badge(box.enabled ? _("Syncing") : _("Not syncing"), box.enabled ? "opportunity" : "missing"));
}

function details(box) {
  return h("div", { class: "mailbox-details" },
    h("p", { class: "muted" }, box.address, box.profile ? ` · ${box.profile}` : ""),
    box.last_success_on ? h("p", { class: "muted" }, _("Last synchronized %(when)s", { when: formatDate(box.last_success_on, true) })) : null,
    !box.enabled && box.disabled_reason ? h("p", { class: "mailbox-reason" }, box.disabled_reason) : null,
    box.alerts && box.alerts.length ? h("ul", { class: "mailbox-alerts" },
      box.alerts.map((a) => h("li", {}, a.message))) : null);
}

export function mailboxSection(view, { onShow, onConnect, onApprove, onDisconnect }) {
  const id = "mailbox-title";
  if (!view || (!view.data && !view.loading)) {
    return section(_("My mailbox"), { id },
      h("p", { class: "empty" }, _("Track your email from the CRM's server, without Outlook open.")),
      view && view.error ? banner(view.error) : null,
      button(_("Show my mailbox"), onShow, { key: "mailbox-show", small: true }));
  }
  if (view.loading) return section(_("My mailbox"), { id }, spinner(view.loading));
  const data = view.data;
  const box = data.mailbox;
  const busy = Boolean(view.busy);
  const actions = [];
  if (data.can_connect && (!box || !box.connected || !box.enabled)) {
    actions.push(button(box && box.connected ? _("Connect again") : _("Connect my mailbox"), onConnect,
      { kind: "primary", key: "mailbox-connect", disabled: busy }));
  }
  if (box && box.can_approve) actions.push(button(_("Approve my address"), onApprove, { key: "mailbox-approve", disabled: busy }));
  if (box && box.connected) actions.push(button(_("Disconnect"), onDisconnect, { kind: "subtle", key: "mailbox-disconnect", disabled: busy }));
  return section(_("My mailbox"), { id },
    box ? statusLine(box) : null,
    box ? details(box) : null,
    !data.can_connect && data.why_not ? h("p", { class: "mailbox-why" }, data.why_not) : null,
    view.error ? banner(view.error) : null,
    view.busy ? spinner(view.busy) : null,
    actions.length ? h("div", { class: "actions" }, actions) : null);
}
