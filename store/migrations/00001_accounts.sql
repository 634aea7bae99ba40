-- Accounts, third-party and device identities, profiles and the currency
-- ledger. {{id}} is an auto-incrementing 64-bit primary key; store/migrate.go
-- expands it per dialect (AUTOINCREMENT on SQLite so that ids are never
-- reused, an identity column on PostgreSQL). Times are unix milliseconds.

-- +goose Up
CREATE TABLE accounts (
    id            {{id}},
    kind          TEXT   NOT NULL CHECK (kind IN ('password', 'guest', 'external')),
    -- name is NULL for guest and external accounts. name_key is the
    -- lower-cased name, computed by the store: uniqueness is
    -- case-insensitive and identical on both databases (SQLite's lower() and
    -- NOCASE only fold ASCII).
    name          TEXT,
    name_key      TEXT   UNIQUE,
    password_hash TEXT   NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL
);

-- identities maps a device id (provider '') or a third-party subject to the
-- account it logs into. The primary key makes get-or-create race-safe.
CREATE TABLE identities (
    provider   TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX identities_account ON identities (account_id);

CREATE TABLE profiles (
    account_id BIGINT PRIMARY KEY REFERENCES accounts (id),
    nickname   TEXT   NOT NULL,
    avatar     TEXT   NOT NULL DEFAULT '',
    -- balance changes only through the ledger; the CHECK backs up the
    -- store's own test.
    balance    BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0),
    updated_at BIGINT NOT NULL
);

-- ledger is append-only. idem_key is the caller's idempotency key (a
-- request or round id): its uniqueness is what makes a repeated change a
-- no-op. balance_after is what the first application returned, so a repeat
-- returns the same answer.
CREATE TABLE ledger (
    id            {{id}},
    account_id    BIGINT NOT NULL REFERENCES profiles (account_id),
    delta         BIGINT NOT NULL,
    reason        TEXT   NOT NULL,
    idem_key      TEXT   NOT NULL UNIQUE,
    balance_after BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX ledger_account ON ledger (account_id, id);

-- +goose Down
DROP TABLE ledger;
DROP TABLE profiles;
DROP TABLE identities;
DROP TABLE accounts;
