"""Pure logic of the vault: envelope encryption, masking, formats, policies."""
