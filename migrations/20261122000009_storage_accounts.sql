-- Delegated ("mirror storage permissions") connections: each Jira user's own storage
-- account. The refresh token is encrypted (XChaCha20-Poly1305) under the customer's master
-- key, bound to its row (connection, user); access tokens are never stored.
CREATE TABLE storage_accounts (
    connection_id uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    user_key      text NOT NULL,
    -- The account's name as Microsoft reports it (UPN), for display.
    account       text,
    key_id        text NOT NULL,
    nonce         bytea NOT NULL,
    ciphertext    bytea NOT NULL,
    connected_at  timestamptz NOT NULL DEFAULT now(),
    refreshed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_id, user_key)
);

-- Sign-ins in progress: `state` (stored as its SHA-256) names the user and connection, and
-- carries the PKCE verifier, encrypted. Taken once by the callback; short-lived.
CREATE TABLE storage_account_states (
    state_hash    bytea PRIMARY KEY,
    connection_id uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    user_key      text NOT NULL,
    return_to     text,
    key_id        text NOT NULL,
    nonce         bytea NOT NULL,
    ciphertext    bytea NOT NULL,
    expires_at    timestamptz NOT NULL
);

-- A disconnected, revoked or replaced account must stop working on every instance at once:
-- each instance forgets the connection's per-user storages (and their cached access tokens)
-- when told the connection changed. Deletions and new sign-ins only (`connected_at`):
-- refreshes update the token columns all the time and must not flush every cache.
CREATE TRIGGER storage_accounts_changed
    AFTER DELETE OR UPDATE OF connected_at ON storage_accounts
    FOR EACH ROW EXECUTE FUNCTION filebridge_config_changed('connection', 'connection_id');
