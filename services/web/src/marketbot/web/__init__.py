"""The marketbot web app (subscribers and operators)."""
