/**
 * The pane's language and its words. Outlook's display language
 * (Office.context.displayLanguage, such as "cs-CZ" or "zh-CN") chooses it, mapped the way the
 * server maps Accept-Language (server/i18n.py language_of: zh-CN and zh-Hans are Simplified
 * Chinese; zh-TW, zh-HK, zh-MO and zh-Hant are not offered it). A display language the
 * product does not speak gives way to the one the context call names (the user's own
 * setting, else the organization's default), else English.
 *
 * The words come from the same gettext catalogs as the pages, as one small JSON per language
 * ({English: translation}, /addin/strings/<language>.json, cached by the browser and
 * revalidated by its ETag), loaded before the pane renders. Every string the pane shows goes
 * through `_()` (with `%(name)s` values; `ngettext()` where a count changes the words, its forms
 * chosen by Intl.PluralRules), so `flask --app server translate extract` finds it;
 * dates and numbers are formatted with Intl for the same locale.
 */

/** The languages the product speaks, and the locale Intl formats for each. */
const LOCALES = { en: "en-US", cs: "cs-CZ", zh: "zh-CN", sv: "sv-SE", sl: "sl-SI", hu: "hu-HU" };

let current = { language: "en", locale: LOCALES.en, strings: {} };

/**
 * One of the product's language codes for a tag such as "zh-CN", "cs_CZ" or "sv"; null for
 * a language it does not speak.
 * @param {string | null | undefined} tag
 * @returns {string | null}
 */
export function languageOf(tag) {
  if (!tag) return null;
  const lower = String(tag).replace(/_/g, "-").toLowerCase();
  const primary = lower.split("-", 1)[0].trim();
  if (primary === "zh") return ["-tw", "-hk", "-mo", "-hant"].some((t) => lower.includes(t)) ? null : "zh";
  return Object.prototype.hasOwnProperty.call(LOCALES, primary) ? primary : null;
}

/** The language the pane speaks now (one of the product's codes). */
export function language() {
  return current.language;
}

/** The locale Intl formats dates and numbers for (the display language's own tag where it is one). */
export function locale() {
  return current.locale;
}

/**
 * Speak ``code`` (English for a language the product does not speak): load its words (a
 * failed load leaves the pane in English rather than stopping it) and set <html lang>.
 * ``tag``: Outlook's display language, kept as the formatting locale when it is of ``code``.
 * @param {string | null | undefined} code
 * @param {string | null} [tag]
 */
export async function useLanguage(code, tag = null) {
  const chosen = languageOf(code) || "en";
  let strings = {};
  if (chosen !== "en") {
    try {
      const response = await fetch(new URL(`../strings/${chosen}.json`, import.meta.url), { credentials: "omit" });
      if (response.ok) strings = await response.json();
    } catch {
      strings = {}; // unreachable: the English words, the pane still works
    }
  }
  const own = tag && languageOf(tag) === chosen ? String(tag).replace(/_/g, "-") : null;
  current = { language: chosen, locale: own || LOCALES[chosen], strings: strings || {} };
  document.documentElement.lang = chosen;
  return chosen;
}

/**
 * ``text`` in the pane's language, with ``%(name)s`` replaced by ``values[name]``.
 * @param {string} text
 * @param {Record<string, unknown>} [values]
 */
export function _(text, values) {
  const found = current.strings[text];
  return fill(typeof found === "string" && found ? found : text, values);
}

/**
 * The words for ``count`` things: the catalog's form for the count's plural category in the
 * pane's locale ({category: text} as the server serves it), else English's; ``%(count)s``
 * and ``values`` filled in.
 * @param {string} singular
 * @param {string} plural
 * @param {number} count
 * @param {Record<string, unknown>} [values]
 */
export function ngettext(singular, plural, count, values) {
  const forms = current.strings[singular];
  let out = count === 1 ? singular : plural;
  if (forms && typeof forms === "object") out = forms[new Intl.PluralRules(current.locale).select(count)] || forms.other || out;
  return fill(out, { count, ...values });
}

function fill(text, values) {
  if (!values) return text;
  return text.replace(/%\((\w+)\)s/g, (whole, name) => (name in values ? String(values[name]) : whole));
}
