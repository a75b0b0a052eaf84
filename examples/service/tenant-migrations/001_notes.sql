-- Rendered once per tenant schema (tenant_acme, tenant_globex, …).
CREATE TABLE {{tables.notes}} (
  id         bigserial PRIMARY KEY,
  body       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
