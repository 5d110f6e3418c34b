/**
 * The sign-in screen: shown when neither a pane token nor Office SSO signs the pane in. The
 * button opens the server's own sign-in page in an Office dialog.
 */
import { h } from "../dom.js";
import { banner, button } from "./common.js";

export function signinView({ message, error, busy, onSignIn }) {
  return h("div", { class: "signin" },
    h("div", { class: "signin-mark", "aria-hidden": "true" }, "R"),
    h("h2", { id: "signin-title", tabindex: "-1" }, "Sign in to Regarding"),
    h("p", {}, message || "See who is who in your CRM and track emails and meetings."),
    error ? banner(error) : null,
    button(busy ? "Signing in…" : "Sign in", onSignIn, { kind: "primary", key: "signin", disabled: busy }),
    h("p", { class: "hint" }, `Signs in with your account at ${location.host}.`));
}
