#!/usr/bin/env node
// Generates golden vectors for awx-x402 with independent implementations: viem (EIP-712 digests
// and signatures) and the official @x402/core HTTP header encoders, both pinned in
// tools/package.json. The output, vectors.json beside this file, is committed; the Rust tests
// read it. Regenerate with `make vectors` (only needed when adding vectors).
"use strict";

const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const toolsRequire = createRequire(path.resolve(__dirname, "../../../../tools/package.json"));
const { hashTypedData, getAddress } = toolsRequire("viem");
const { privateKeyToAccount } = toolsRequire("viem/accounts");
const http = toolsRequire("@x402/core/http");

const types = {
  TransferWithAuthorization: [
    { name: "from", type: "address" },
    { name: "to", type: "address" },
    { name: "value", type: "uint256" },
    { name: "validAfter", type: "uint256" },
    { name: "validBefore", type: "uint256" },
    { name: "nonce", type: "bytes32" },
  ],
};

const MAX_UINT256 = (1n << 256n) - 1n;

const cases = [
  {
    description: "Base Sepolia USDC (EIP-712 name USDC), the specification's message",
    privateKey: "0x0000000000000000000000000000000000000000000000000000000000000001",
    domain: { name: "USDC", version: "2", chainId: 84532, verifyingContract: "0x036CbD53842c5426634e7929541eC2318f3dCF7e" },
    message: { to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", value: 10000n, validAfter: 1740672089n, validBefore: 1740672154n,
      nonce: "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480" },
  },
  {
    description: "Base USDC (EIP-712 name USD Coin), anvil's first development key, validAfter 0",
    privateKey: "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    domain: { name: "USD Coin", version: "2", chainId: 8453, verifyingContract: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913" },
    message: { to: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", value: 100000n, validAfter: 0n, validBefore: 1900000000n,
      nonce: "0x0000000000000000000000000000000000000000000000000000000000000000" },
  },
  {
    description: "the development chain 31337, extreme values",
    privateKey: "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    domain: { name: "USD Coin", version: "2", chainId: 31337, verifyingContract: "0x5FbDB2315678afecb367f032d93F642f64180aa3" },
    message: { to: "0x0000000000000000000000000000000000000001", value: MAX_UINT256, validAfter: 0n, validBefore: MAX_UINT256,
      nonce: "0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff" },
  },
  {
    description: "a non-ASCII domain name and a large chain id",
    privateKey: "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
    domain: { name: "Dollar Ünïcødé €", version: "3.1", chainId: 324705682, verifyingContract: "0xcA11bde05977b3631167028862bE2a173976CA11" },
    message: { to: "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc", value: 1n, validAfter: 1n, validBefore: 2n,
      nonce: "0x1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef" },
  },
];

async function eip712Vectors() {
  const vectors = [];
  for (const c of cases) {
    const account = privateKeyToAccount(c.privateKey);
    const message = { from: account.address, ...c.message, to: getAddress(c.message.to) };
    const typed = { domain: c.domain, types, primaryType: "TransferWithAuthorization", message };
    vectors.push({
      description: c.description,
      privateKey: c.privateKey,
      signer: account.address,
      domain: c.domain,
      authorization: {
        from: message.from,
        to: message.to,
        value: message.value.toString(),
        validAfter: message.validAfter.toString(),
        validBefore: message.validBefore.toString(),
        nonce: message.nonce,
      },
      digest: hashTypedData(typed),
      signature: await account.signTypedData(typed),
    });
  }
  return vectors;
}

const paymentRequired = {
  x402Version: 2,
  error: "PAYMENT-SIGNATURE header is required",
  resource: { url: "https://api.example.com/premium-data", description: "Access to premium market data", mimeType: "application/json" },
  accepts: [{ scheme: "exact", network: "eip155:84532", amount: "10000", asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    payTo: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", maxTimeoutSeconds: 60, extra: { name: "USDC", version: "2" } }],
};

const paymentPayload = {
  x402Version: 2,
  resource: paymentRequired.resource,
  accepted: paymentRequired.accepts[0],
  payload: {
    signature: "0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c",
    authorization: { from: "0x857b06519E91e3A54538791bDbb0E22373e36b66", to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
      value: "10000", validAfter: "1740672089", validBefore: "1740672154",
      nonce: "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480" },
  },
  extensions: {},
};

function headerVectors() {
  return [
    { kind: "PAYMENT-REQUIRED", json: paymentRequired, header: http.encodePaymentRequiredHeader(paymentRequired) },
    { kind: "PAYMENT-SIGNATURE", json: paymentPayload, header: http.encodePaymentSignatureHeader(paymentPayload) },
    { kind: "PAYMENT-RESPONSE", json: { success: true, transaction: "0x" + "ab".repeat(32), network: "eip155:84532", payer: "0x857b06519E91e3A54538791bDbb0E22373e36b66" },
      header: http.encodePaymentResponseHeader({ success: true, transaction: "0x" + "ab".repeat(32), network: "eip155:84532", payer: "0x857b06519E91e3A54538791bDbb0E22373e36b66" }) },
    { kind: "PAYMENT-RESPONSE", json: { success: false, errorReason: "insufficient_funds", transaction: "", network: "eip155:84532", payer: "0x857b06519E91e3A54538791bDbb0E22373e36b66" },
      header: http.encodePaymentResponseHeader({ success: false, errorReason: "insufficient_funds", transaction: "", network: "eip155:84532", payer: "0x857b06519E91e3A54538791bDbb0E22373e36b66" }) },
  ];
}

(async () => {
  const lock = JSON.parse(fs.readFileSync(path.resolve(__dirname, "../../../../tools/package-lock.json"), "utf8"));
  const versions = {
    viem: lock.packages["node_modules/viem"].version,
    "@x402/core": lock.packages["node_modules/@x402/core"].version,
  };
  const out = { generatedBy: "crates/x402/tests/data/generate_vectors.js", versions, eip712: await eip712Vectors(), headers: headerVectors() };
  fs.writeFileSync(path.join(__dirname, "vectors.json"), JSON.stringify(out, null, 2) + "\n");
  console.log(`wrote ${out.eip712.length} EIP-712 vectors and ${out.headers.length} header vectors`);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
