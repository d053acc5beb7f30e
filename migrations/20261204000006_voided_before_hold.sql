-- Holds voided before they were made. The policy service releases a payment whose hold request
-- went unanswered and voids the hold; if the hold request is still on its way (delayed on the
-- bus, or committing slowly), the void finds nothing. The void leaves this mark, and a hold of
-- that payment arriving afterwards is refused (`hold_voided`) instead of holding money that no
-- payment will ever capture or release (see services/ledger/src/ops.rs, `void`).
CREATE TABLE ledger.voided_before_hold (
    hold_id uuid PRIMARY KEY,
    voided_at timestamptz NOT NULL DEFAULT now()
);
