-- smsgw schema 9: who may call can be taken back without a restart.
-- A tenant can be disabled (its keys stop working) or removed (keys deleted,
-- row kept so that its messages' history still names it). Every change of
-- who may call bumps auth_generation: each daemon reads it at most once a
-- second and drops its key cache when it moved, so a revocation made by the
-- CLI (another process) or another node is seen within about a second.
-- Dashboard sessions live here so that logout ends one server-side, also
-- across restarts when dashboard.session_secret keeps cookies valid.

ALTER TABLE tenants ADD COLUMN disabled_at REAL;
ALTER TABLE tenants ADD COLUMN removed_at REAL;

CREATE TABLE auth_generation (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  INTEGER NOT NULL
);
INSERT INTO auth_generation (id, generation) VALUES (1, 0);

CREATE INDEX ix_api_keys_tenant ON api_keys (tenant);

-- id_hash: SHA-256 of the random session id the cookie carries.
CREATE TABLE dashboard_sessions (
    id_hash     TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL,
    expires_at  REAL NOT NULL,
    created_at  REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX ix_dashboard_sessions_user ON dashboard_sessions (user_name);
