/**
 * ESLint over the task pane (addin/): Microsoft's eslint-plugin-office-addins recommended
 * rules (its Office.js rules, ESLint's recommended JavaScript rules, typescript-eslint's
 * unused-variable check), run by tests/addin/test_office_tools.py. Its Prettier formatting
 * rule is left off: the pane keeps the project's own line length and style.
 */
const officeAddins = require("eslint-plugin-office-addins");
const globals = require("globals");

module.exports = [
  { ignores: ["**/*.d.ts", "node_modules/", "static/", "tests/", "bench/"] },
  ...officeAddins.configs.recommended,
  {
    files: ["addin/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: { ...globals.browser, Office: "readonly" },
    },
    rules: {
      "prettier/prettier": "off",
    },
  },
  {
    // The preview's stand-in for Office.js and the sign-in dialog's script are plain scripts.
    files: ["addin/preview/office-standin.js"],
    languageOptions: { sourceType: "script" },
  },
];
