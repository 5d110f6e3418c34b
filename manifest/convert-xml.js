#!/usr/bin/env node
// Convert an XML add-in manifest to a unified JSON manifest with Microsoft's converter
// (office-addin-manifest-converter), for tests/addin. Usage:
//
//   node manifest/convert-xml.js regarding.xml OUTPUT_DIR
//
// The converter's own CLI exits 0 even when conversion fails and prints its errors only in
// verbose mode, so this wrapper runs it verbosely and exits 1 on a rejected conversion or
// on any "ERROR:" line it logged. Warnings are printed but do not fail.
"use strict";

const { convert } = require("office-addin-manifest-converter");

async function main() {
  const [xmlPath, outDir] = process.argv.slice(2);
  if (!xmlPath || !outDir) {
    console.error("usage: convert-xml.js XML_MANIFEST OUTPUT_DIR");
    return 2;
  }
  const errors = [];
  const printError = console.error;
  console.error = (...args) => {
    const line = args.map(String).join(" ");
    if (line.includes("ERROR: ")) {
      errors.push(line);
    }
    printError(...args);
  };
  try {
    await convert(xmlPath, outDir, false, null, null, true);
  } catch (err) {
    errors.push(String(err && err.stack ? err.stack : err));
  } finally {
    console.error = printError;
  }
  if (errors.length > 0) {
    console.error(`conversion failed with ${errors.length} error(s):\n${errors.join("\n")}`);
    return 1;
  }
  return 0;
}

main().then((code) => {
  process.exitCode = code;
});
