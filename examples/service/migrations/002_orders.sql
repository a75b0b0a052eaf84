CREATE TABLE {{tables.orders}} (
  id          bigserial PRIMARY KEY,
  user_id     bigint NOT NULL REFERENCES {{tables.users}},
  status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid')),
  total_cents bigint NOT NULL CHECK (total_cents >= 0),
  created_at  timestamptz NOT NULL DEFAULT now(),
  paid_at     timestamptz
);
-- Keyset pagination of a user's orders: WHERE user_id = $1 AND id < $2 ORDER BY id DESC.
CREATE INDEX {{indexes.orders_user_id_id}} ON {{tables.orders}} (user_id, id DESC);

CREATE TABLE {{tables.order_items}} (
  order_id    bigint NOT NULL REFERENCES {{tables.orders}} ON DELETE CASCADE,
  line        int NOT NULL,
  sku         text NOT NULL,
  quantity    int NOT NULL CHECK (quantity > 0),
  price_cents bigint NOT NULL CHECK (price_cents >= 0),
  PRIMARY KEY (order_id, line)
);
