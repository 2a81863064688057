"""marketbot.execution: the engine both executors share.

Consume OrderRequested by plan priority, size the order, place it exactly once, publish
every outcome, and track the position until it closes.
"""
