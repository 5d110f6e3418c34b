/**
 * Small building blocks shared by the pane's views: buttons, sections, badges, record links,
 * form fields with their error messages, and the panel header with its Back button.
 */
import { h, safeHref, uid } from "../dom.js";
import { _ } from "../i18n.js";
import { ic } from "../icons.js";

/** A record type's name in the pane's language ("phone_call" → "Phone call"). */
export function typeLabel(type) {
  const labels = {
    account: _("Account"), contact: _("Contact"), lead: _("Lead"), opportunity: _("Opportunity"), case: _("Case"),
    user: _("User"), queue: _("Queue"), email: _("Email"), appointment: _("Appointment"), task: _("Task"),
    phone_call: _("Phone call"),
  };
  return labels[type] || type;
}

/** A person's part in the item ("to" → "To"). */
export function roleLabel(role) {
  const labels = {
    from: _("From"), to: _("To"), cc: _("Cc"), organizer: _("Organizer"), required: _("Required"), optional: _("Optional"),
  };
  return labels[role] || role;
}

/**
 * A Fluent button: kind is primary, secondary (default), subtle or danger.
 * @param {string} label
 * @param {(event: Event) => unknown} onclick
 * @param {{kind?: string, iconName?: string, key?: string, disabled?: boolean, title?: string,
 *   describedBy?: string, type?: string, small?: boolean}} [options]
 */
export function button(label, onclick, { kind = "secondary", iconName, key, disabled, title, describedBy, type = "button", small } = {}) {
  return h("button", {
    type, class: ["btn", `btn-${kind}`, small && "btn-small"], onclick, disabled,
    title, "aria-describedby": describedBy, dataset: key ? { key } : undefined,
  }, iconName ? ic(iconName) : null, h("span", { class: "btn-label" }, label));
}

/**
 * @param {string} label
 * @param {string} iconName
 * @param {(event: Event) => unknown} onclick
 * @param {{key?: string, cls?: string}} [options]
 */
export function iconButton(label, iconName, onclick, { key, cls } = {}) {
  return h("button", {
    type: "button", class: ["btn", "btn-icon", cls], onclick, "aria-label": label, title: label,
    dataset: key ? { key } : undefined,
  }, ic(iconName));
}

/**
 * A link that opens the CRM in a new window (the pane stays as it is).
 * @param {string | null | undefined} url
 * @param {string} text
 * @param {{cls?: string, label?: string}} [options]
 */
export function crmLink(url, text, { cls, label } = {}) {
  if (!url) return h("span", { class: cls }, text);
  return h("a", {
    href: safeHref(url), target: "_blank", rel: "noopener noreferrer", class: cls,
    "aria-label": label,
  }, text);
}

export function badge(text, tone = "neutral") {
  return h("span", { class: `badge badge-${tone}` }, text);
}

/**
 * @param {string} title
 * @param {{id?: string, count?: number, actions?: Node, cls?: string}} options
 * @param {...any} children
 */
export function section(title, { id, count, actions, cls } = {}, ...children) {
  const headingId = id || uid("section");
  return h("section", { class: ["section", cls], "aria-labelledby": headingId },
    h("div", { class: "section-head" },
      h("h2", { id: headingId, tabindex: "-1" }, title,
        count != null ? h("span", { class: "count", "aria-label": `(${count})` }, String(count)) : null),
      actions || null),
    ...children);
}

/**
 * @param {string} title
 * @param {() => unknown} onBack
 * @param {{id?: string}} [options]
 */
export function panelHeader(title, onBack, { id } = {}) {
  return h("div", { class: "panel-head" },
    iconButton(_("Back"), "back", onBack, { key: "panel-back" }),
    h("h2", { id: id || "panel-title", tabindex: "-1" }, title));
}

/**
 * A labelled input with its hint and error (aria-invalid, aria-describedby).
 * @param {{name: string, label: string, value?: any, type?: string, required?: boolean,
 *   error?: string, hint?: string, options?: Array<[any, string]>, autocomplete?: string,
 *   maxlength?: number, rows?: number, inputmode?: string}} spec
 */
export function field({ name, label, value = "", type = "text", required, error, hint, options,
  autocomplete = "off", maxlength, rows, inputmode }) {
  const id = uid(`f-${name}`);
  const hintId = hint ? `${id}-hint` : null;
  const errorId = error ? `${id}-error` : null;
  const describedBy = [hintId, errorId].filter(Boolean).join(" ") || null;
  const common = {
    id, name, required, "aria-required": required ? "true" : null, "aria-invalid": error ? "true" : null,
    "aria-describedby": describedBy, class: "input",
  };
  let control;
  if (options) {
    control = h("select", common, options.map(([v, text]) => h("option", { value: v, selected: String(v) === String(value) }, text)));
  } else if (rows) {
    control = h("textarea", { ...common, rows, maxlength }, value == null ? "" : String(value));
  } else {
    control = h("input", { ...common, type, value: value == null ? "" : value, autocomplete, maxlength, inputmode });
  }
  return h("div", { class: ["field", error && "invalid"] },
    h("div", { class: "label-row" }, h("label", { for: id }, label),
      required ? h("span", { class: "req", "aria-hidden": "true" }, "*") : null),
    control,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    error ? h("p", { class: "field-error", id: errorId }, ic("warning"), h("span", {}, error)) : null);
}

/** @param {{name: string, label: string, checked?: boolean, hint?: string}} spec */
export function checkbox({ name, label, checked, hint }) {
  const id = uid(`c-${name}`);
  return h("div", { class: "check" },
    h("input", { type: "checkbox", id, name, checked }),
    h("label", { for: id }, label),
    hint ? h("p", { class: "hint" }, hint) : null);
}

/**
 * An error or notice banner; ``onDismiss`` adds a close button.
 * @param {string} message
 * @param {{tone?: string, details?: string[], onDismiss?: () => unknown, action?: Node}} [options]
 */
export function banner(message, { tone = "error", details, onDismiss, action } = {}) {
  return h("div", { class: `banner banner-${tone}`, role: tone === "error" ? "alert" : "status" },
    ic(tone === "error" ? "warning" : tone === "success" ? "check" : "pending"),
    h("div", { class: "banner-body" },
      h("p", {}, message),
      details && details.length ? h("ul", {}, details.map((d) => h("li", {}, d))) : null,
      action || null),
    onDismiss ? iconButton(_("Dismiss"), "close", onDismiss, { cls: "banner-close" }) : null);
}

export function spinner(label) {
  return h("span", { class: "inline-busy", role: "status" },
    h("span", { class: "spinner small", "aria-hidden": "true" }), h("span", {}, label));
}
