// The official @x402/fetch client paying URL with PRIVATE_KEY (spend controls allow TOKEN).
// Env: URL, PRIVATE_KEY, TOKEN.
import { toolsRequire, env, NETWORK, print } from "./common.mjs";

const { privateKeyToAccount } = toolsRequire("viem/accounts");
const { x402Client, x402HTTPClient, wrapFetchWithPayment } = toolsRequire("@x402/fetch");
const { ExactEvmScheme } = toolsRequire("@x402/evm/exact/client");

const account = privateKeyToAccount(env("PRIVATE_KEY"));
const client = new x402Client()
  .register(NETWORK, new ExactEvmScheme(account))
  .setSpendControls({ allowedAssets: [{ network: NETWORK, asset: env("TOKEN") }] });
const fetchWithPayment = wrapFetchWithPayment(fetch, client);
try {
  const response = await fetchWithPayment(env("URL"));
  const text = await response.text();
  let paymentResponse = null;
  try {
    paymentResponse = new x402HTTPClient(client).getPaymentSettleResponse((name) => response.headers.get(name));
  } catch (error) {
    paymentResponse = { decodeError: String(error) };
  }
  print({ status: response.status, body: text, paymentResponse, payer: account.address });
} catch (error) {
  print({ error: String(error && error.stack ? error.stack : error) });
  process.exit(1);
}
