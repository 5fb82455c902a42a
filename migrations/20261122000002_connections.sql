-- Storage connections an admin created. Non-secret settings are JSON; secrets live in
-- connection_secrets, encrypted (XChaCha20-Poly1305) under the customer's master key.
CREATE TABLE connections (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    kind       text NOT NULL,
    settings   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    updated_by text NOT NULL
);

CREATE TABLE connection_secrets (
    connection_id uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    name          text NOT NULL,
    -- Which master key encrypted it (a fingerprint, not the key), so rotation and a wrong
    -- key are told apart from tampering.
    key_id        text NOT NULL,
    nonce         bytea NOT NULL,
    ciphertext    bytea NOT NULL,
    PRIMARY KEY (connection_id, name)
);
