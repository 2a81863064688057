"""marketbot.keyvault: the only holder of users exchange API secrets."""
