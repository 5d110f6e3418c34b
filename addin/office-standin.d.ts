/**
 * Types for the type check of the pane (tsconfig.json, `tsc -p tsconfig.json`), not served:
 * the shape the two stand-ins for Office.js (the preview's addin/preview/office-standin.js
 * and the tests' tests/addin/officejs_stub.js) are held to, and the globals they share with
 * the pages that load them.
 */

/**
 * What a stand-in object may hold for the Office.js type ``T``: only members ``T`` has, each
 * function with ``T``'s signature; plain strings are allowed where Office.js has enum values
 * (a stand-in cannot hold the real enums' values).
 */
type Stand<T> = {
  [K in keyof T]?: T[K] extends (...args: any[]) => any ? T[K]
    : T[K] extends string | number | boolean ? T[K] | string : Stand<T[K]>;
};

interface Window {
  /** Set by the preview's stand-in: the pane asks for the sign-in dialog's preview flavour. */
  __regardingPreview?: boolean;
  /** The preview page's API for the stand-in in its frame (addin/preview/preview.js). */
  RegardingPreview?: any;
  /** The tests' stand-in: its configuration and its record of calls. */
  __OFFICE_CONFIG?: any;
  __office?: any;
}
