//! The ledger checker (`awx ledger check`): recomputes every balance from the immutable entries
//! and checks the double-entry invariants. Any finding is a violation.
//!
//! 1. Each account's four counters equal the sums of its entries, and its version equals its
//!    entry count.
//! 2. Each entry's recorded counters equal the running sums up to it (no gap, no rewrite).
//! 3. Each leg's debit and credit entries move the same amounts.
//! 4. Per asset, posted credits minus posted debits sum to zero, and pending debits equal pending
//!    credits.
//! 5. No account breaks its constraint (no wallet or payable below zero).
//! 6. A hold is pending exactly when nothing has resolved it.

use sqlx::PgPool;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which check found it.
    pub check: &'static str,
    /// What is wrong, naming the rows.
    pub detail: String,
}

async fn collect(
    pool: &PgPool,
    check: &'static str,
    sql: &'static str,
) -> Result<Vec<Violation>, sqlx::Error> {
    let details: Vec<String> = sqlx::query_scalar(sql).fetch_all(pool).await?;
    Ok(details.into_iter().map(|detail| Violation { check, detail }).collect())
}

/// Runs every check; an empty list means the ledger is consistent.
pub async fn check(pool: &PgPool) -> Result<Vec<Violation>, sqlx::Error> {
    let mut violations = Vec::new();
    violations.extend(
        collect(
            pool,
            "account counters equal the sums of their entries",
            "WITH sums AS (
               SELECT a.id, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted, a.version,
                 COALESCE(sum(e.pending_added - e.pending_removed) FILTER (WHERE e.side = 'debit'), 0) AS dp,
                 COALESCE(sum(e.posted_added) FILTER (WHERE e.side = 'debit'), 0) AS dpo,
                 COALESCE(sum(e.pending_added - e.pending_removed) FILTER (WHERE e.side = 'credit'), 0) AS cp,
                 COALESCE(sum(e.posted_added) FILTER (WHERE e.side = 'credit'), 0) AS cpo,
                 count(e.id) AS entries
               FROM ledger.accounts a LEFT JOIN ledger.entries e ON e.account_id = a.id
               GROUP BY a.id)
             SELECT format('account %s: counters (%s, %s, %s, %s) v%s, entries give (%s, %s, %s, %s) v%s',
                           id, debits_pending, debits_posted, credits_pending, credits_posted, version,
                           dp, dpo, cp, cpo, entries)
             FROM sums
             WHERE (debits_pending, debits_posted, credits_pending, credits_posted, version)
                   <> (dp, dpo, cp, cpo, entries)",
        )
        .await?,
    );
    violations.extend(
        collect(
            pool,
            "every entry records the running sums up to it",
            "WITH running AS (
               SELECT id, account_id, account_version, debits_pending_after, debits_posted_after,
                      credits_pending_after, credits_posted_after,
                 sum(CASE WHEN side = 'debit' THEN pending_added - pending_removed ELSE 0 END) OVER w AS dp,
                 sum(CASE WHEN side = 'debit' THEN posted_added ELSE 0 END) OVER w AS dpo,
                 sum(CASE WHEN side = 'credit' THEN pending_added - pending_removed ELSE 0 END) OVER w AS cp,
                 sum(CASE WHEN side = 'credit' THEN posted_added ELSE 0 END) OVER w AS cpo,
                 row_number() OVER w AS position
               FROM ledger.entries
               WINDOW w AS (PARTITION BY account_id ORDER BY account_version))
             SELECT format('entry %s of account %s (version %s) records counters that are not the running sums', id, account_id, account_version)
             FROM running
             WHERE (debits_pending_after, debits_posted_after, credits_pending_after, credits_posted_after) <> (dp, dpo, cp, cpo)
                OR account_version <> position",
        )
        .await?,
    );
    violations.extend(
        collect(
            pool,
            "each leg moves the same amounts on both sides",
            "SELECT format('transfer %s leg %s is unbalanced', transfer_id, leg)
             FROM ledger.entries
             GROUP BY transfer_id, leg
             HAVING count(*) <> 2
                OR count(*) FILTER (WHERE side = 'debit') <> 1
                OR min(pending_added) <> max(pending_added)
                OR min(pending_removed) <> max(pending_removed)
                OR min(posted_added) <> max(posted_added)",
        )
        .await?,
    );
    violations.extend(
        collect(
            pool,
            "per asset, credits minus debits sum to zero",
            "SELECT format('asset %s/%s: posted credits - debits = %s, pending credits - debits = %s',
                           network, token, sum(credits_posted - debits_posted), sum(credits_pending - debits_pending))
             FROM ledger.accounts
             GROUP BY network, token
             HAVING sum(credits_posted - debits_posted) <> 0 OR sum(credits_pending - debits_pending) <> 0",
        )
        .await?,
    );
    violations.extend(
        collect(
            pool,
            "no account breaks its constraint",
            "SELECT format('%s account %s (%s) is below zero', code, id, ref)
             FROM ledger.accounts
             WHERE (constraint_kind = 'debits_must_not_exceed_credits' AND debits_posted + debits_pending > credits_posted)
                OR (constraint_kind = 'credits_must_not_exceed_debits' AND credits_posted + credits_pending > debits_posted)",
        )
        .await?,
    );
    violations.extend(
        collect(
            pool,
            "a hold is pending exactly when unresolved",
            "SELECT format('hold %s is %s but %s', h.id, h.status,
                           CASE WHEN r.id IS NULL THEN 'nothing resolved it' ELSE 'it was resolved' END)
             FROM ledger.transfers h
             LEFT JOIN ledger.transfers r ON r.pending_id = h.id
             WHERE h.kind = 'hold' AND ((h.status = 'pending') <> (r.id IS NULL))",
        )
        .await?,
    );
    Ok(violations)
}
