"""marketbot.runtime: the base every service stands on."""
