-- Permissions a key has beyond reading and spot trading, as the exchange names them
-- (issue 14): the vault refuses such a key and names each one.
ALTER TABLE credentials ADD COLUMN excess text[] NOT NULL DEFAULT '{}';
