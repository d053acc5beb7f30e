// Compiled (never run) by `tsc -p sdk/typescript` in the tests: the declarations type-check, and
// an agent written against them does too.
import { AgentWallex, AwxError, paymentInfo, type PaymentResponse } from "../src/index.js";

export async function agent(apiKey: string, agentId: string, url: string): Promise<string | undefined> {
  const aw = new AgentWallex({ apiKey, baseUrl: "http://127.0.0.1:8080" });
  const fetchWithPayment = aw.x402.httpInterceptor({ agentId, chain: "eip155:84532", maxAmount: "0.05" });
  try {
    const response = await fetchWithPayment(url);
    const paid: PaymentResponse = await aw.x402.getPayment(paymentInfo(response)?.ledgerId ?? "");
    return paid.state;
  } catch (error) {
    if (error instanceof AwxError) return error.rule;
    throw error;
  }
}
