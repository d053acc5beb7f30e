//! Part 1 of `awx settlement bench`: gas per settled payment, three ways (see the parent module).

#[allow(clippy::wildcard_imports, reason = "the parent's constants, helpers and imports")]
use super::*;

// ---------------------------------------------------------------------------------------------
// Part 1: gas per settled payment.

/// One case: `payments` payments, payment i from payer `i % payers` to payee `i % payees`.
#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    what: &'static str,
    payers: usize,
    payees: usize,
    payments: usize,
}

const CASES: [Case; 2] = [
    Case {
        name: "A",
        what: "100 payments, 1 payer to 1 payee",
        payers: 1,
        payees: 1,
        payments: 100,
    },
    Case {
        name: "B",
        what: "100 payments, 100 payers to 10 payees",
        payers: 100,
        payees: 10,
        payments: 100,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One `transferWithAuthorization` transaction per payment.
    PerPayment,
    /// The original authorizations in one `aggregate3`.
    Batched,
    /// One authorization per (payer, payee) group and one fee authorization per payer, in one
    /// `aggregate3`.
    Netted,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Self::PerPayment => "(1) one transaction per payment",
            Self::Batched => "(2) the 100 authorizations in one aggregate3",
            Self::Netted => {
                "(3) netted: one per (payer, payee) + one fee per payer, one aggregate3"
            }
        }
    }
}

/// What one mode of one case cost.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    gas: u64,
    transactions: usize,
    transfers: usize,
}

/// The gas part's chain.
struct GasChain {
    // Dropping it stops anvil: kept for the part's lifetime.
    _anvil: Anvil,
    relayer: DynProvider,
    token: Token,
    domain: TokenDomain,
}

impl GasChain {
    async fn start() -> anyhow::Result<Self> {
        let anvil = Anvil::spawn(AnvilOptions::default()).await.context("starting anvil")?;
        let relayer = connect_with_wallet(anvil.endpoint(), anvil.dev_key(0)?)?;
        let token = deploy_test_usdc(&relayer, TOKEN_NAME, TOKEN_VERSION)
            .await
            .context("deploying the token")?;
        let batch = install_multicall3(&relayer).await.context("installing Multicall3")?;
        ensure!(batch == MULTICALL3_ADDRESS, "Multicall3 is at {batch}");
        let domain = TokenDomain {
            name: TOKEN_NAME.into(),
            version: TOKEN_VERSION.into(),
            chain_id: anvil.chain_id(),
            verifying_contract: token.address(),
        };
        Ok(Self { _anvil: anvil, relayer, token, domain })
    }

    /// An authorization of `value` from `payer` to `to`, signed locally.
    fn sign(
        &self,
        payer: &PrivateKeySigner,
        to: Address,
        value: u128,
    ) -> anyhow::Result<Eip3009Payload> {
        let authorization = Eip3009Authorization {
            from: payer.address(),
            to,
            value: U256::from(value),
            valid_after: U256::ZERO,
            valid_before: U256::from(now().saturating_add(3_600)),
            nonce: awx_x402::eip3009::random_nonce(),
        };
        let signature = authorization.sign(payer, &self.domain)?;
        Ok(Eip3009Payload {
            signature: Bytes::copy_from_slice(&signature.to_bytes()),
            authorization,
        })
    }

    /// Sends `aggregate3` of the payloads' transfers (every call `allowFailure`); returns its
    /// gas used.
    async fn aggregate(&self, payloads: &[Eip3009Payload]) -> anyhow::Result<u64> {
        let calls = payloads
            .iter()
            .map(|payload| {
                Ok(Call3 {
                    target: self.token.address(),
                    allow_failure: true,
                    call_data: Token::transfer_calldata(payload)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let request = TransactionRequest::default()
            .with_to(MULTICALL3_ADDRESS)
            .with_input(aggregate3_calldata(&calls))
            .with_gas_limit(BATCH_GAS_LIMIT);
        let receipt = self.relayer.send_transaction(request).await?.get_receipt().await?;
        ensure!(receipt.status(), "the aggregate3 transaction reverted");
        Ok(receipt.gas_used)
    }

    async fn balance(&self, account: Address) -> anyhow::Result<U256> {
        Ok(self.token.balance_of(account).await?)
    }

    /// Settles `case` in `mode` from fresh payers and payees; checks every balance.
    async fn run(&self, case: Case, mode: Mode) -> anyhow::Result<Outcome> {
        let payers: Vec<PrivateKeySigner> =
            (0..case.payers).map(|_| PrivateKeySigner::random()).collect();
        let payees: Vec<Address> = (0..case.payees).map(|_| Address::random()).collect();
        let fee_address = Address::random();
        for payer in &payers {
            self.token.mint(payer.address(), U256::from(MINTED)).await.context("minting")?;
        }
        let payments: Vec<(usize, usize)> =
            (0..case.payments).map(|i| (i % case.payers, i % case.payees)).collect();
        // What each party must have moved.
        let mut received = vec![0u128; case.payees];
        let mut debited = vec![0u128; case.payers];
        let mut fees = vec![0u128; case.payers];
        for &(payer, payee) in &payments {
            received[payee] = received[payee].saturating_add(VALUE);
            debited[payer] = debited[payer].saturating_add(VALUE);
            fees[payer] = fees[payer].saturating_add(FEE);
        }
        let outcome = match mode {
            Mode::PerPayment => {
                let mut gas = 0u64;
                for &(payer, payee) in &payments {
                    let payload = self.sign(&payers[payer], payees[payee], VALUE)?;
                    let receipt = self
                        .token
                        .transfer_with_authorization(&payload)
                        .await
                        .context("transferWithAuthorization")?;
                    gas = gas.saturating_add(receipt.gas_used);
                }
                Outcome { gas, transactions: payments.len(), transfers: payments.len() }
            }
            Mode::Batched => {
                let payloads = payments
                    .iter()
                    .map(|&(payer, payee)| self.sign(&payers[payer], payees[payee], VALUE))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Outcome {
                    gas: self.aggregate(&payloads).await?,
                    transactions: 1,
                    transfers: payloads.len(),
                }
            }
            Mode::Netted => {
                // As the worker plans them: the groups' transfers, then the payers' fees.
                let mut groups: BTreeMap<(usize, usize), u128> = BTreeMap::new();
                for &(payer, payee) in &payments {
                    let sum = groups.entry((payer, payee)).or_default();
                    *sum = sum.saturating_add(VALUE);
                }
                let mut payloads = groups
                    .iter()
                    .map(|(&(payer, payee), &sum)| self.sign(&payers[payer], payees[payee], sum))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                for (payer, &fee) in fees.iter().enumerate() {
                    if fee > 0 {
                        payloads.push(self.sign(&payers[payer], fee_address, fee)?);
                    }
                }
                Outcome {
                    gas: self.aggregate(&payloads).await?,
                    transactions: 1,
                    transfers: payloads.len(),
                }
            }
        };
        let netted = mode == Mode::Netted;
        for (payee, expected) in payees.iter().zip(&received) {
            let balance = self.balance(*payee).await?;
            ensure!(
                balance == U256::from(*expected),
                "case {} {}: a payee holds {balance}, expected {expected}",
                case.name,
                mode.label()
            );
        }
        for (index, payer) in payers.iter().enumerate() {
            let out =
                if netted { debited[index].saturating_add(fees[index]) } else { debited[index] };
            let expected = MINTED.saturating_sub(out);
            let balance = self.balance(payer.address()).await?;
            ensure!(
                balance == U256::from(expected),
                "case {} {}: a payer holds {balance}, expected {expected}",
                case.name,
                mode.label()
            );
        }
        let expected_fees: u128 = if netted { fees.iter().sum() } else { 0 };
        let balance = self.balance(fee_address).await?;
        ensure!(
            balance == U256::from(expected_fees),
            "case {} {}: the fee address holds {balance}, expected {expected_fees}",
            case.name,
            mode.label()
        );
        Ok(outcome)
    }
}

/// Part 1. Returns the gas of one transaction per payment, per payment, in case B (the
/// throughput part's reference: many payers, several payees).
pub(super) async fn gas_part() -> anyhow::Result<u64> {
    say("== gas per settled payment ($0.10 each, fee 2 %), on anvil")?;
    let chain = GasChain::start().await?;
    let mut rows = Vec::new();
    let mut reference = 0u64;
    for case in CASES {
        let mut per_payment = None;
        for mode in [Mode::PerPayment, Mode::Batched, Mode::Netted] {
            let outcome = chain.run(case, mode).await?;
            let payments = u64::try_from(case.payments).unwrap_or(u64::MAX);
            let base = *per_payment.get_or_insert(outcome.gas);
            let versus = ratio(outcome.gas, base);
            say(&format!(
                "case {} ({}), {}: {} transaction(s), {} transfer(s), {} gas = {:.0} gas per payment; {:.3} of (1); balances exact",
                case.name,
                case.what,
                mode.label(),
                outcome.transactions,
                outcome.transfers,
                outcome.gas,
                ratio(outcome.gas, payments),
                versus
            ))?;
            if case.name == "B" && mode == Mode::PerPayment {
                reference = outcome.gas / payments.max(1);
            }
            rows.push((case, mode, outcome, versus));
        }
    }
    say("\n| case | mode | transactions | transfers | gas used | gas per payment | vs (1) |")?;
    say("|---|---|---|---|---|---|---|")?;
    for (case, mode, outcome, versus) in &rows {
        let payments = u64::try_from(case.payments).unwrap_or(u64::MAX);
        say(&format!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.3} |",
            case.name,
            mode.label(),
            outcome.transactions,
            outcome.transfers,
            outcome.gas,
            ratio(outcome.gas, payments),
            versus
        ))?;
    }
    if let Some((_, _, _, netted)) =
        rows.iter().find(|(case, mode, _, _)| case.name == "A" && *mode == Mode::Netted)
    {
        say(&format!(
            "\ngoal (case A, netting at 0.1 or less of one transaction per payment): {:.3} -> {}",
            netted,
            if *netted <= 0.1 { "met" } else { "NOT met" }
        ))?;
    }
    Ok(reference)
}
