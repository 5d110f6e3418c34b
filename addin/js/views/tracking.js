/**
 * The tracking card at the top of the pane: whether the item is tracked (and regarding what),
 * pending or failed, and the actions that fit: Track, Track and set regarding, Change
 * regarding, Untrack, Open in CRM.
 */
import { h } from "../dom.js";
import { ic } from "../icons.js";
import { button, crmLink, typeLabel } from "./common.js";

const STATUS = {
  not_tracked: { label: "Not tracked", tone: "neutral", icon: "email" },
  tracked: { label: "Tracked", tone: "success", icon: "check" },
  pending: { label: "Track pending", tone: "warning", icon: "pending" },
  failed: { label: "Track failed", tone: "danger", icon: "warning" },
};

function noun(item) {
  return item.type === "appointment" ? "meeting" : "email";
}

function regardingLine(regarding) {
  if (!regarding) return h("p", { class: "regarding none" }, "Regarding: not set");
  const name = regarding.name == null ? "a record you may not see" : regarding.name;
  return h("p", { class: "regarding" },
    ic("link"), h("span", { class: "visually-hidden" }, "Regarding: "),
    h("span", { class: "regarding-label", "aria-hidden": "true" }, "Regarding "),
    crmLink(regarding.url, name, { cls: "regarding-name" }),
    h("span", { class: "regarding-type" }, ` · ${typeLabel(regarding.type)}`));
}

function explanation(tracking, item) {
  const what = noun(item);
  if (tracking.status === "not_tracked") {
    return tracking.copy_url
      ? `You untracked this ${what}. Its copy stays in the CRM, where it still shows on the records it is about.`
      : `This ${what} is not in the CRM.`;
  }
  if (tracking.status === "tracked") return null;
  if (tracking.status === "pending") {
    if (tracking.reason) return tracking.reason;
    return item.mode === "compose"
      ? `The ${what} is tracked when you send it.`
      : `The ${what} is tracked as soon as the server receives it.`;
  }
  return tracking.reason || `The ${what} could not be tracked.`;
}

/** Someone else's mailbox: for whom the item is tracked, or why it is not. */
function sharedLine(shared, item) {
  if (!shared) return null;
  if (!shared.allowed) return h("p", { class: "track-text shared-mailbox" }, ic("warning"), " ", shared.message);
  return h("p", { class: "track-text shared-mailbox" }, ic("link"),
    ` In ${shared.name}'s mailbox: the ${noun(item)} is tracked for ${shared.name}, with you recorded as who tracked it.`);
}

export function trackingCard(state, actions) {
  const { tracking } = state.ctx;
  const shared = state.ctx.shared_mailbox;
  // In someone else's mailbox only Track (for them, when they allowed it) is offered.
  const can = shared ? { ...state.ctx.can, track: state.ctx.can.track && shared.allowed } : state.ctx.can;
  const item = state.item;
  const info = STATUS[tracking.status] || STATUS.not_tracked;
  const busy = Boolean(state.busy);
  const hasIdentity = Boolean(item.internet_message_id || (item.type === "appointment" && item.item_id));
  const buttons = [];
  if (tracking.status === "not_tracked" || tracking.status === "failed") {
    if (can.track) {
      buttons.push(button(tracking.status === "failed" ? "Try again" : "Track", actions.track,
        { kind: "primary", iconName: "check", key: "track", disabled: busy }));
      buttons.push(button("Track and set regarding", actions.trackWithRegarding,
        { iconName: "link", key: "track-regarding", disabled: busy }));
    }
  }
  if (!shared && (tracking.status === "tracked" || tracking.status === "pending")) {
    if (tracking.url) {
      buttons.push(h("a", {
        class: "btn btn-primary", href: tracking.url, target: "_blank", rel: "noopener noreferrer",
        dataset: { key: "open-in-crm" },
      }, ic("open"), h("span", { class: "btn-label" }, "Open in CRM")));
    }
    buttons.push(button(tracking.regarding ? "Change regarding" : "Set regarding", actions.changeRegarding,
      { iconName: "link", key: "change-regarding", disabled: busy }));
  }
  if (shared && tracking.url) {
    buttons.push(h("a", {
      class: "btn btn-primary", href: tracking.url, target: "_blank", rel: "noopener noreferrer",
      dataset: { key: "open-in-crm" },
    }, ic("open"), h("span", { class: "btn-label" }, "Open in CRM")));
  }
  if (!shared && tracking.status !== "not_tracked" && hasIdentity) {
    buttons.push(button("Untrack", actions.askUntrack, { kind: "subtle", iconName: "unlink", key: "untrack", disabled: busy }));
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
      ? h("p", { class: "track-text" }, crmLink(tracking.copy_url, "Open the CRM copy"))
      : null,
    !can.track && tracking.status === "not_tracked"
      ? h("p", { class: "track-text" }, "Your security role does not allow tracking. Ask your administrator for the Track email privilege.")
      : null,
    state.busy ? h("p", { class: "busy-line", role: "status" },
      h("span", { class: "spinner small", "aria-hidden": "true" }), h("span", {}, state.busy)) : null,
    buttons.length ? h("div", { class: "actions" }, buttons) : null);
}
