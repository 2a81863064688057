"""marketbot.decision: market context, an explainable decision, plan-priority fan-out."""
