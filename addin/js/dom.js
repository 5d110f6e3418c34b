/**
 * Building the pane's DOM safely (dates and numbers in the pane's locale, i18n.js). Everything that comes from an email or the CRM is put in
 * with text nodes (never innerHTML), links are checked to be http(s) or relative, and
 * attributes named on* are refused, so a hostile display name or subject stays inert text.
 */

import { locale } from "./i18n.js";

const SVG_NS = "http://www.w3.org/2000/svg";

const SAFE_PROTOCOLS = new Set(["https:", "http:", "mailto:", "tel:"]);

/** A link target that is safe to put in href: relative, http(s), mailto or tel; else "#". */
export function safeHref(value) {
  if (value == null || value === "") return "#";
  try {
    const url = new URL(String(value), document.baseURI);
    return SAFE_PROTOCOLS.has(url.protocol) ? url.href : "#";
  } catch {
    return "#";
  }
}

/** h("button", {class: "btn", onclick: fn}, "Track") → an element; children are nodes or text. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) {
      if (typeof value !== "function") throw new TypeError(`${key} must be a function`);
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (key === "text") {
      el.textContent = String(value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "href" || key === "src") {
      el.setAttribute(key, safeHref(value));
    } else if (key === "value" && "value" in el) {
      el.value = String(value);
    } else if (key === "checked" || key === "disabled" || key === "selected") {
      el[key] = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false || child === "") continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** A small inline icon from path data (our own 20×20 drawings), hidden from screen readers. */
export function icon(paths, cls = "icon") {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 20 20");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", cls);
  for (const d of [].concat(paths)) {
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

let idCounter = 0;
export function uid(prefix = "id") {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** Initials for an avatar: "Carol Customer" → "CC", "info@x.test" → "I". */
export function initials(name) {
  const words = String(name || "").replace(/[<>"'()[\]]/g, " ").split(/[\s@._-]+/).filter(Boolean);
  if (!words.length) return "?";
  const first = words[0][0] || "";
  const last = words.length > 1 ? words[words.length - 1][0] : "";
  return (first + last).toUpperCase();
}

/** A stable avatar colour index for a name (Fluent's persona colours). */
export function colorIndex(text) {
  let hash = 0;
  for (const ch of String(text || "")) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 8;
}

export function formatDate(iso, withTime = false) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  /** @type {Intl.DateTimeFormatOptions} */
  const options = withTime ? { dateStyle: "medium", timeStyle: "short" } : { dateStyle: "medium" };
  return new Intl.DateTimeFormat(locale(), options).format(date);
}

export function formatMoney(value) {
  if (value == null || value === "") return "";
  const number = Number(value);
  if (!Number.isFinite(number)) return String(value);
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: 0 }).format(number);
}

/** "in_progress" → "In progress". */
export function humanize(value) {
  const text = String(value || "").replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}
