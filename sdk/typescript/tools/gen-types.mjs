// Generates src/types.d.ts (the API's schemas as TypeScript types) from openapi/openapi.json.
//
//   node tools/gen-types.mjs           writes src/types.d.ts
//   node tools/gen-types.mjs --check   exits 1 if src/types.d.ts differs (drift)
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const openapi = join(root, "..", "..", "openapi", "openapi.json");
const output = join(root, "src", "types.d.ts");

function type(schema) {
  if (schema.$ref) return schema.$ref.split("/").pop();
  for (const combinator of ["oneOf", "anyOf"]) {
    if (schema[combinator]) return schema[combinator].map(type).join(" | ");
  }
  if (schema.allOf) return schema.allOf.map(type).join(" & ");
  if (schema.enum) return schema.enum.map((value) => JSON.stringify(value)).join(" | ");
  const kind = schema.type;
  if (Array.isArray(kind)) {
    return kind.map((one) => (one === "null" ? "null" : type({ ...schema, type: one }))).join(" | ");
  }
  switch (kind) {
    case "string":
      return "string";
    case "integer":
      return "number";
    case "number":
      return "number";
    case "boolean":
      return "boolean";
    case "null":
      return "null";
    case "array":
      return `Array<${type(schema.items ?? {})}>`;
    case "object":
      if (!schema.properties) return "Record<string, unknown>";
      return objectType(schema, "");
    default:
      return "unknown";
  }
}

function objectType(schema, indent) {
  const required = new Set(schema.required ?? []);
  const lines = Object.keys(schema.properties)
    .sort()
    .map((name) => {
      const key = /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name) ? name : JSON.stringify(name);
      return `${indent}  ${key}${required.has(name) ? "" : "?"}: ${type(schema.properties[name])};`;
    });
  return `{\n${lines.join("\n")}\n${indent}}`;
}

function render(spec) {
  const schemas = spec.components.schemas;
  const out = [
    "// The API's schemas, generated from openapi/openapi.json by tools/gen-types.mjs.",
    "// Do not edit: regenerate with `node sdk/typescript/tools/gen-types.mjs`; a test fails when this file drifts.",
    "",
  ];
  for (const name of Object.keys(schemas).sort()) {
    const schema = schemas[name];
    const doc = (schema.description ?? name).split("\n")[0].replace(/\*\//g, "*\\/");
    out.push(`/** ${doc} */`);
    if (schema.type === "object" && schema.properties) {
      out.push(`export interface ${name} ${objectType(schema, "")}`);
    } else {
      out.push(`export type ${name} = ${type(schema)};`);
    }
    out.push("");
  }
  return out.join("\n");
}

const text = render(JSON.parse(readFileSync(openapi, "utf8")));
if (process.argv.includes("--check")) {
  if (!existsSync(output) || readFileSync(output, "utf8") !== text) {
    console.error(`${output} differs from what ${openapi} generates: run node sdk/typescript/tools/gen-types.mjs`);
    process.exit(1);
  }
} else {
  writeFileSync(output, text);
}
