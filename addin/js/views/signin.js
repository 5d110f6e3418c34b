/**
 * The sign-in screen: shown when neither a pane token nor Office SSO signs the pane in. The
 * button opens the server's own sign-in page in an Office dialog.
 */
import { h } from "../dom.js";
import { _ } from "../i18n.js";
import { banner, button } from "./common.js";

export function signinView({ message, error, busy, onSignIn }) {
  return h("div", { class: "signin" },
    h("div", { class: "signin-mark", "aria-hidden": "true" }, "R"),
    h("h2", { id: "signin-title", tabindex: "-1" }, _("Sign in to Regarding")),
    h("p", {}, message || _("See who is who in your CRM and track emails and meetings.")),
    error ? banner(error) : null,
    button(busy ? _("Signing in…") : _("Sign in"), onSignIn, { kind: "primary", key: "signin", disabled: busy }),
    h("p", { class: "hint" }, _("Signs in with your account at %(host)s.", { host: location.host })));
}
