CREATE TABLE {{tables.orders}} (
  id      bigserial PRIMARY KEY,
  user_id bigint NOT NULL REFERENCES {{tables.users}},
  item    text NOT NULL
);
