// Shared by the interop scripts: the pinned packages from tools/node_modules, and env parsing.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const toolsRequire = createRequire(path.resolve(here, "../tools/package.json"));

export function env(name) {
  const value = process.env[name];
  if (value === undefined || value === "") {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return value;
}

export const NETWORK = process.env.NETWORK || "eip155:31337";

export function print(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}
