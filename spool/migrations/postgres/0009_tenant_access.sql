-- smsgw schema 9 (PostgreSQL): who may call can be taken back without a
-- restart; see sqlite/0009_tenant_access.sql for the why of each part.

ALTER TABLE tenants ADD COLUMN disabled_at double precision;
ALTER TABLE tenants ADD COLUMN removed_at double precision;

CREATE TABLE auth_generation (
    id          integer PRIMARY KEY CHECK (id = 1),
    generation  bigint NOT NULL
);
INSERT INTO auth_generation (id, generation) VALUES (1, 0);

CREATE INDEX ix_api_keys_tenant ON api_keys (tenant);

CREATE TABLE dashboard_sessions (
    id_hash     text PRIMARY KEY,
    user_name   text NOT NULL,
    expires_at  double precision NOT NULL,
    created_at  double precision NOT NULL
);
CREATE INDEX ix_dashboard_sessions_user ON dashboard_sessions (user_name);
