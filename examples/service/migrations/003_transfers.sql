CREATE TABLE {{tables.transfers}} (
  id           bigserial PRIMARY KEY,
  from_user_id bigint NOT NULL REFERENCES {{tables.users}},
  to_user_id   bigint NOT NULL REFERENCES {{tables.users}},
  amount_cents bigint NOT NULL CHECK (amount_cents > 0),
  created_at   timestamptz NOT NULL DEFAULT now(),
  CHECK (from_user_id <> to_user_id)
);
CREATE INDEX {{indexes.transfers_from_user_id}} ON {{tables.transfers}} (from_user_id);
CREATE INDEX {{indexes.transfers_to_user_id}} ON {{tables.transfers}} (to_user_id);
