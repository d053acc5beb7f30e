-- The bus's tables, installed into each service's own schema by that service's migration:
--   <schema>.outbox  events written in the same transaction as the state change that caused them,
--                    relayed to Redis streams by the service's outbox relay (at least once);
--   <schema>.inbox   message ids a consumer has processed (with the stored reply, for commands),
--                    so a redelivered message is never applied twice.
CREATE OR REPLACE FUNCTION public.awx_bus_install(schema_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', schema_name);
  EXECUTE format($sql$
    CREATE TABLE IF NOT EXISTS %I.outbox (
      seq           bigserial PRIMARY KEY,
      event_id      uuid NOT NULL UNIQUE,
      topic         text NOT NULL CHECK (topic ~ '^[a-z0-9_.-]{1,100}$'),
      payload       jsonb NOT NULL,
      trace_context jsonb NOT NULL DEFAULT '{}',
      created_at    timestamptz NOT NULL DEFAULT now(),
      published_at  timestamptz
    )$sql$, schema_name);
  EXECUTE format(
    'CREATE INDEX IF NOT EXISTS outbox_unpublished ON %I.outbox (seq) WHERE published_at IS NULL',
    schema_name);
  EXECUTE format($sql$
    CREATE TABLE IF NOT EXISTS %I.inbox (
      consumer      text NOT NULL,
      message_id    uuid NOT NULL,
      reply         jsonb,
      processed_at  timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (consumer, message_id)
    )$sql$, schema_name);
  EXECUTE format(
    'CREATE INDEX IF NOT EXISTS inbox_processed_at ON %I.inbox (processed_at)', schema_name);
END
$$;
