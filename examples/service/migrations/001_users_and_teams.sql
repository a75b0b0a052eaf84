CREATE TABLE {{tables.teams}} (
  id         bigserial PRIMARY KEY,
  name       text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {{tables.users}} (
  id            bigserial PRIMARY KEY,
  email         text NOT NULL UNIQUE,
  name          text NOT NULL,
  team_id       bigint REFERENCES {{tables.teams}},
  -- Credits in cents; the CHECK is the last line of defence behind the row locks of a transfer.
  balance_cents bigint NOT NULL DEFAULT 0 CHECK (balance_cents >= 0),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX {{indexes.users_team_id}} ON {{tables.users}} (team_id);
