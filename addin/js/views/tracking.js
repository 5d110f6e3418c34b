/**
 * The tracking card at the top of the pane: whether the item is tracked (and regarding what),
 * pending or failed, and the actions that fit: Track, Track and set regarding, Change
 * regarding, Untrack, Open in CRM.
 */
import { h } from "../dom.js";
import { _ } from "../i18n.js";
import { ic } from "../icons.js";
import { button, crmLink, typeLabel } from "./common.js";

function status(name) {
  const all = {
    not_tracked: { label: _("Not tracked"), tone: "neutral", icon: "email" },
    tracked: { label: _("Tracked"), tone: "success", icon: "check" },
    pending: { label: _("Track pending"), tone: "warning", icon: "pending" },
    failed: { label: _("Track failed"), tone: "danger", icon: "warning" },
  };
  return all[name] || all.not_tracked;
}

function isMeeting(item) {
  return item.type === "appointment";
}

function regardingLine(regarding) {
  if (!regarding) return h("p", { class: "regarding none" }, _("Regarding: not set"));
  const name = regarding.name == null ? _("a record you may not see") : regarding.name;
  return h("p", { class: "regarding" },
    ic("link"), h("span", { class: "visually-hidden" }, _("Regarding: ")),
    h("span", { class: "regarding-label", "aria-hidden": "true" }, _("Regarding ")),
    crmLink(regarding.url, name, { cls: "regarding-name" }),
    h("span", { class: "regarding-type" }, ` · ${typeLabel(regarding.type)}`));
}

function explanation(tracking, item) {
  const meeting = isMeeting(item);
  if (tracking.status === "not_tracked") {
    if (tracking.copy_url) {
      return meeting ? _("You untracked this meeting. Its copy stays in the CRM, where it still shows on the records it is about.")
        : _("You untracked this email. Its copy stays in the CRM, where it still shows on the records it is about.");
    }
    return meeting ? _("This meeting is not in the CRM.") : _("This email is not in the CRM.");
  }
  if (tracking.status === "tracked") return null;
  if (tracking.status === "pending") {
    if (tracking.reason) return tracking.reason;
    if (item.mode === "compose") return meeting ? _("The meeting is tracked when you send it.") : _("The email is tracked when you send it.");
    return meeting ? _("The meeting is tracked as soon as the server receives it.")
      : _("The email is tracked as soon as the server receives it.");
  }
  return tracking.reason || (meeting ? _("The meeting could not be tracked.") : _("The email could not be tracked."));
}

/** Someone else's mailbox: for whom the item is tracked, or why it is not. */
function sharedLine(shared, item) {
  if (!shared) return null;
  if (!shared.allowed) return h("p", { class: "track-text shared-mailbox" }, ic("warning"), " ", shared.message);
  const values = { name: shared.name };
  return h("p", { class: "track-text shared-mailbox" }, ic("link"), " ", isMeeting(item)
    ? _("In %(name)s's mailbox: the meeting is tracked for %(name)s, with you recorded as who tracked it.", values)
    : _("In %(name)s's mailbox: the email is tracked for %(name)s, with you recorded as who tracked it.", values));
}

export function trackingCard(state, actions) {
  const { tracking } = state.ctx;
  const shared = state.ctx.shared_mailbox;
  // In someone else's mailbox only Track (for them, when they allowed it) is offered.
  const can = shared ? { ...state.ctx.can, track: state.ctx.can.track && shared.allowed } : state.ctx.can;
  const item = state.item;
  const info = status(tracking.status);
  const busy = Boolean(state.busy);
  const hasIdentity = Boolean(item.internet_message_id || (item.type === "appointment" && item.item_id));
  const buttons = [];
  if (tracking.status === "not_tracked" || tracking.status === "failed") {
    if (can.track) {
      buttons.push(button(tracking.status === "failed" ? _("Try again") : _("Track"), actions.track,
        { kind: "primary", iconName: "check", key: "track", disabled: busy }));
      buttons.push(button(_("Track and set regarding"), actions.trackWithRegarding,
        { iconName: "link", key: "track-regarding", disabled: busy }));
    }
  }
  if (!shared && (tracking.status === "tracked" || tracking.status === "pending")) {
    if (tracking.url) {
      buttons.push(h("a", {
        class: "btn btn-primary", href: tracking.url, target: "_blank", rel: "noopener noreferrer",
        dataset: { key: "open-in-crm" },
      }, ic("open"), h("span", { class: "btn-label" }, _("Open in CRM"))));
    }
    buttons.push(button(tracking.regarding ? _("Change regarding") : _("Set regarding"), actions.changeRegarding,
      { iconName: "link", key: "change-regarding", disabled: busy }));
  }
  if (shared && tracking.url) {
    buttons.push(h("a", {
      class: "btn btn-primary", href: tracking.url, target: "_blank", rel: "noopener noreferrer",
      dataset: { key: "open-in-crm" },
    }, ic("open"), h("span", { class: "btn-label" }, _("Open in CRM"))));
  }
  if (!shared && tracking.status !== "not_tracked" && hasIdentity) {
    buttons.push(button(_("Untrack"), actions.askUntrack, { kind: "subtle", iconName: "unlink", key: "untrack", disabled: busy }));
  }
  const text = explanation(tracking, item);
  return h("section", { class: `track-card tone-${info.tone}`, "aria-labelledby": "track-status" },
    h("div", { class: "track-status" },
      h("span", { class: "status-icon", "aria-hidden": "true" }, ic(info.icon)),
      h("h2", { id: "track-status", tabindex: "-1", dataset: { status: tracking.status } }, info.label)),
    tracking.status === "not_tracked" ? null : regardingLine(tracking.regarding),
    text ? h("p", { class: "track-text" }, text) : null,
    sharedLine(shared, item),
    tracking.status === "not_tracked" && tracking.copy_url
      ? h("p", { class: "track-text" }, crmLink(tracking.copy_url, _("Open the CRM copy")))
      : null,
    !can.track && tracking.status === "not_tracked"
      ? h("p", { class: "track-text" }, _("Your security role does not allow tracking. Ask your administrator for the Track email privilege."))
      : null,
    state.busy ? h("p", { class: "busy-line", role: "status" },
      h("span", { class: "spinner small", "aria-hidden": "true" }), h("span", {}, state.busy)) : null,
    buttons.length ? h("div", { class: "actions" }, buttons) : null);
}
