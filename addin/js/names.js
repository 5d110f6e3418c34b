/**
 * Prefilling records from what an email says about a person: a display name split into
 * first and last name the way people expect ("Customer, Carol", "Dr. Jane van der Berg",
 * "carol.customer@…"), and a company name guessed from the address's domain.
 */

const TITLES = new Set(["mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "herr", "frau", "mme", "m"]);
const SUFFIXES = new Set(["jr", "sr", "ii", "iii", "iv", "phd", "md", "esq", "mba", "msc", "bsc"]);
const PARTICLES = new Set(["van", "von", "der", "den", "de", "da", "di", "du", "del", "della", "dos", "das",
  "la", "le", "ter", "ten", "bin", "binti", "al", "el", "st", "y"]);
const FREE_MAIL = new Set(["gmail", "googlemail", "outlook", "hotmail", "live", "msn", "yahoo", "icloud",
  "me", "mac", "aol", "gmx", "web", "proton", "protonmail", "mail", "yandex", "zoho", "fastmail", "hey"]);
const SECOND_LEVEL = new Set(["co", "com", "org", "net", "ac", "gov", "edu", "ltd", "plc"]);

function clean(word) {
  return word.replace(/[.,]+$/g, "").toLowerCase();
}

function capitalize(word) {
  return word ? word.charAt(0).toUpperCase() + word.slice(1) : word;
}

/** First and last name from a local part: "carol.customer" → Carol Customer. */
function fromAddress(address) {
  const local = String(address || "").split("@")[0].replace(/\+.*$/, "");
  const parts = local.split(/[._-]+/).filter((p) => p && !/^\d+$/.test(p));
  if (!parts.length) return { first_name: "", last_name: local || "" };
  if (parts.length === 1) return { first_name: "", last_name: capitalize(parts[0]) };
  return { first_name: capitalize(parts[0]), last_name: parts.slice(1).map(capitalize).join(" ") };
}

/**
 * {first_name, last_name} for a display name (falling back to the address). The last name
 * is never empty when anything at all is known, since contacts and leads require it.
 */
export function splitName(displayName, address) {
  let name = String(displayName || "").replace(/["“”]/g, "").replace(/\([^)]*\)|\[[^\]]*\]/g, " ").trim();
  if (!name || name.includes("@") || name === address) return fromAddress(address);
  if (name.includes(",")) {
    const [last, rest] = name.split(/,(.*)/s).map((s) => (s || "").trim());
    const restWords = rest.split(/\s+/).filter((w) => w && !SUFFIXES.has(clean(w)) && !TITLES.has(clean(w)));
    if (last && restWords.length) return { first_name: restWords.join(" "), last_name: last };
    name = last || rest;
  }
  let words = name.split(/\s+/).filter(Boolean);
  while (words.length > 1 && TITLES.has(clean(words[0]))) words = words.slice(1);
  while (words.length > 1 && SUFFIXES.has(clean(words[words.length - 1]))) words = words.slice(0, -1);
  if (words.length === 1) return { first_name: "", last_name: words[0] };
  let lastStart = words.length - 1;
  while (lastStart > 1 && PARTICLES.has(words[lastStart - 1].toLowerCase())) lastStart -= 1;
  return { first_name: words.slice(0, lastStart).join(" "), last_name: words.slice(lastStart).join(" ") };
}

/** "carol@mail.fabrikam.example" → "Fabrikam"; free mail providers give "". */
export function companyFromAddress(address) {
  const domain = String(address || "").split("@")[1] || "";
  const labels = domain.toLowerCase().split(".").filter(Boolean);
  if (labels.length < 2) return "";
  let index = labels.length - 2;
  if (labels.length >= 3 && SECOND_LEVEL.has(labels[index]) && labels[labels.length - 1].length === 2) index -= 1;
  const label = labels[index];
  if (!label || FREE_MAIL.has(label)) return "";
  return label.split("-").map(capitalize).join(" ");
}
