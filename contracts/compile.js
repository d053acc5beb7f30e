#!/usr/bin/env node
// Compiles contracts/src/*.sol with the pinned solcjs (tools/node_modules/solc) and writes, per
// contract, contracts/out/<Name>.abi.json and contracts/out/<Name>.bin (deployment bytecode, hex).
//
//   node contracts/compile.js            write the artifacts
//   node contracts/compile.js --check    compile in memory and fail if the committed artifacts differ
//
// Settings are fixed (optimizer 200 runs, evmVersion cancun) so the output is reproducible.
"use strict";

const fs = require("fs");
const path = require("path");

const root = path.resolve(__dirname, "..");
const srcDir = path.join(__dirname, "src");
const outDir = path.join(__dirname, "out");

let solc;
try {
  solc = require(path.join(root, "tools", "node_modules", "solc"));
} catch (error) {
  console.error("solc is not installed in tools/node_modules: run `make setup` first");
  process.exit(2);
}

const sources = {};
for (const file of fs.readdirSync(srcDir).filter((f) => f.endsWith(".sol")).sort()) {
  sources[file] = { content: fs.readFileSync(path.join(srcDir, file), "utf8") };
}

const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const diagnostic of output.errors || []) {
  console.error(diagnostic.formattedMessage);
}
if (errors.length > 0) {
  process.exit(1);
}

const artifacts = {};
for (const [file, contracts] of Object.entries(output.contracts)) {
  for (const [name, contract] of Object.entries(contracts)) {
    artifacts[`${name}.abi.json`] = JSON.stringify(contract.abi, null, 2) + "\n";
    artifacts[`${name}.bin`] = contract.evm.bytecode.object + "\n";
  }
}

const check = process.argv.includes("--check");
let drift = false;
for (const [file, content] of Object.entries(artifacts)) {
  const target = path.join(outDir, file);
  if (check) {
    const committed = fs.existsSync(target) ? fs.readFileSync(target, "utf8") : null;
    if (committed !== content) {
      console.error(`contracts/out/${file} differs from a fresh compile: run \`make contracts\``);
      drift = true;
    }
  } else {
    fs.mkdirSync(outDir, { recursive: true });
    fs.writeFileSync(target, content);
  }
}
if (check) {
  const expected = new Set(Object.keys(artifacts));
  for (const file of fs.readdirSync(outDir)) {
    if (!expected.has(file)) {
      console.error(`contracts/out/${file} has no source: remove it or run \`make contracts\``);
      drift = true;
    }
  }
}
if (drift) {
  process.exit(1);
}
console.log(`${check ? "checked" : "wrote"} ${Object.keys(artifacts).length} artifacts with solc ${solc.version()}`);
