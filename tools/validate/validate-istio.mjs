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
const KINDS = {
  "networking.istio.io": ["VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "Sidecar"],
  "security.istio.io": ["PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication"],
};
const VERSIONS = {
  "networking.istio.io": ["v1", "v1beta1", "v1alpha3"],
  "security.istio.io": ["v1", "v1beta1"],
};

// telemetry.istio.io is not among the package's schemas, and its IstioOperator
// has no spec schema: the fields of Istio's Telemetry and IstioOperator reference
// pages, for the parts this repository uses.
const OPERATOR_FIELDS = {
  "": ["apiVersion", "kind", "metadata", "spec"],
  spec: ["profile", "meshConfig", "components", "values", "hub", "tag", "revision", "namespace", "installPackagePath", "compatibilityVersion"],
  "spec.components": ["cni", "pilot", "ingressGateways", "egressGateways", "base", "istiodRemote", "ztunnel"],
  "spec.components.cni": ["enabled", "namespace", "k8s"],
  "spec.values": ["pilot", "cni", "global", "meshConfig", "gateways", "sidecarInjectorWebhook"],
  "spec.values.pilot": ["env"],
  "spec.meshConfig": ["enableTracing", "extensionProviders", "defaultProviders", "defaultConfig", "accessLogFile", "accessLogEncoding", "outboundTrafficPolicy", "enableAutoMtls", "trustDomain"],
  "spec.meshConfig.extensionProviders[]": ["name", "opentelemetry", "zipkin", "skywalking", "datadog", "stackdriver", "envoyOtelAls", "envoyFileAccessLog", "envoyExtAuthzHttp", "envoyExtAuthzGrpc", "prometheus"],
  "spec.meshConfig.extensionProviders[].opentelemetry": ["service", "port", "maxTagLength", "http", "grpc", "resourceDetectors", "dynatraceSampler"],
};
const TELEMETRY_FIELDS = {
  "": ["apiVersion", "kind", "metadata", "spec"],
  spec: ["selector", "targetRef", "targetRefs", "tracing", "metrics", "accessLogging"],
  "spec.tracing[]": ["match", "providers", "randomSamplingPercentage", "disableSpanReporting", "customTags", "useRequestIdForTraceSampling", "enableIstioTags"],
  "spec.tracing[].providers[]": ["name"],
};

function checkFields(obj, where, table) {
  const out = [];
  const walk = (value, path) => {
    const allowed = table[path];
    if (!allowed || value === null || typeof value !== "object" || Array.isArray(value)) return;
    for (const [k, v] of Object.entries(value)) {
      if (!allowed.includes(k)) out.push(`${where}: unknown field \`${k}\` at ${path || "top level"}`);
      const child = path ? `${path}.${k}` : k;
      if (Array.isArray(v)) v.forEach((item) => walk(item, `${child}[]`));
      else walk(v, child);
    }
  };
  walk(obj, "");
  return out;
}

function checkTelemetry(obj, where) {
  const out = checkFields(obj, where, TELEMETRY_FIELDS);
  for (const t of obj.spec?.tracing ?? []) {
    const p = t.randomSamplingPercentage;
    if (p !== undefined && (typeof p !== "number" || p < 0 || p > 100)) out.push(`${where}: randomSamplingPercentage must be a number from 0 to 100`);
  }
  return out;
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate-istio.mjs FILE...");
  process.exit(2);
}

const errors = [];
const checked = [];
let telemetry = 0;
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
    const name = `${obj.kind} ${obj.metadata?.namespace ?? "(no namespace)"}/${obj.metadata?.name}`;
    if (group === "telemetry.istio.io") {
      if (obj.kind !== "Telemetry" || !["v1", "v1alpha1"].includes(version)) errors.push(`${where}: ${name}: unknown kind or version ${obj.apiVersion}`);
      else errors.push(...checkTelemetry(obj, `${where} (${name})`));
      telemetry++;
      return;
    }
    if (group === "install.istio.io") {
      if (obj.kind !== "IstioOperator" || version !== "v1alpha1") errors.push(`${where}: ${name}: unknown kind or version ${obj.apiVersion}`);
      else errors.push(...checkFields(obj, `${where} (${name})`, OPERATOR_FIELDS));
      telemetry++;
      return;
    }
    if (!KINDS[group]) return;
    if (!KINDS[group].includes(obj.kind) || !VERSIONS[group].includes(version)) {
      errors.push(`${where}: ${name}: unknown kind or version ${obj.apiVersion}`);
      return;
    }
    checked.push({ where: `${where} (${name})`, obj, kind: obj.kind, version, group });
  });
}

// 1. The published schemas.
for (const c of checked) {
  const mod = await import(`@kubernetes-models/istio/${c.group}/${c.version}/${c.kind}`);
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
  const module = `@kubernetes-models/istio/${c.group}/${c.version}/${c.kind}`;
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
console.log(`${checked.length + telemetry} Istio objects checked in ${files.length} files: ${errors.length} errors`);
process.exit(errors.length ? 1 : 0);
