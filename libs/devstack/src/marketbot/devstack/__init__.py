"""marketbot.devstack: run the whole platform as separate processes on one machine."""
