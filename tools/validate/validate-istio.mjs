// Validates Istio objects (rendered manifests, multi-document YAML) offline:
//  1. against Istio's published CRD schemas, with @kubernetes-models/istio's validate();
//  2. for fields Istio does not define, which (1) lets through (the schemas allow
//     extra properties): each object is type-checked by the TypeScript compiler as
//     an object literal of the package's generated interface, and an object
//     literal with a property the interface lacks is a compile error.
// Usage: node validate-istio.mjs FILE...   Exit 1 on any error.
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import ts from "typescript";

const here = dirname(fileURLToPath(import.meta.url));
const KINDS = ["VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "Sidecar"];
const VERSIONS = ["v1", "v1beta1", "v1alpha3"];

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate-istio.mjs FILE...");
  process.exit(2);
}

const errors = [];
const checked = [];
for (const file of files) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  docs.forEach((d, i) => {
    const where = `${file}, document ${i + 1}`;
    if (d.errors.length) {
      errors.push(`${where}: YAML: ${d.errors[0].message}`);
      return;
    }
    const obj = d.toJS();
    if (!obj || typeof obj !== "object") return;
    const [group, version] = String(obj.apiVersion || "").split("/");
    if (group !== "networking.istio.io") return;
    const name = `${obj.kind} ${obj.metadata?.namespace ?? "(no namespace)"}/${obj.metadata?.name}`;
    if (!KINDS.includes(obj.kind) || !VERSIONS.includes(version)) {
      errors.push(`${where}: ${name}: unknown kind or version ${obj.apiVersion}`);
      return;
    }
    checked.push({ where: `${where} (${name})`, obj, kind: obj.kind, version });
  });
}

// 1. The published schemas.
for (const c of checked) {
  const mod = await import(`@kubernetes-models/istio/networking.istio.io/${c.version}/${c.kind}`);
  try {
    new mod[c.kind](c.obj).validate();
  } catch (e) {
    const details = (e.errors || []).map((x) => `${x.instancePath || "/"} ${x.message}`).join("; ");
    errors.push(`${c.where}: schema: ${details || e.message}`);
  }
}

// 2. Unknown fields, by the compiler's excess-property check.
const dir = mkdtempSync(join(tmpdir(), "weather-istio-"));
const sources = checked.map((c, i) => {
  const file = join(dir, `doc${i}.ts`);
  const module = `@kubernetes-models/istio/networking.istio.io/${c.version}/${c.kind}`;
  writeFileSync(file, `import type { I${c.kind} } from ${JSON.stringify(module)};\n` +
    `export const doc: I${c.kind} = ${JSON.stringify(c.obj, null, 2)};\n`);
  return file;
});
const program = ts.createProgram(sources, {
  noEmit: true,
  strict: true,
  skipLibCheck: true,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  typeRoots: [],
  types: [],
  baseUrl: here,
  paths: { "@kubernetes-models/*": [join(here, "node_modules/@kubernetes-models/*")] },
});
for (const diag of ts.getPreEmitDiagnostics(program)) {
  const text = ts.flattenDiagnosticMessageText(diag.messageText, "\n").split("\n")[0];
  const index = diag.file ? sources.indexOf(diag.file.fileName) : -1;
  if (index < 0) {
    errors.push(`TypeScript: ${text}`);
    continue;
  }
  const { line } = diag.file.getLineAndCharacterOfPosition(diag.start ?? 0);
  const code = diag.file.text.split("\n")[line].trim();
  const unknown = /'"?([^'"]+)"?' does not exist in type/.exec(text);
  errors.push(unknown
    ? `${checked[index].where}: unknown field \`${unknown[1]}\` (at ${code})`
    : `${checked[index].where}: ${text} (at ${code})`);
}
rmSync(dir, { recursive: true, force: true });

for (const e of errors) console.error(`error: ${e}`);
console.log(`${checked.length} Istio objects checked in ${files.length} files: ${errors.length} errors`);
process.exit(errors.length ? 1 : 0);
