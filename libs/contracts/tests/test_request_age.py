"""An order request's age counts from when it became runnable (issue 18)."""

from __future__ import annotations

from datetime import timedelta

from marketbot.contracts import OrderRequested

from .samples import sample


def test_a_requests_age_counts_from_when_it_became_runnable() -> None:
    """requested_at = not_before (the end of the plan's delay); an older message that still
    carries requested_at = decided_at is read the same way."""
    request = sample("OrderRequested")
    assert isinstance(request, OrderRequested)
    decided = request.requested_at
    old_style = request.model_copy(update={"not_before": decided + timedelta(seconds=3)})
    assert old_style.runnable_at == decided + timedelta(seconds=3)
    assert old_style.age_s(decided + timedelta(seconds=10)) == 7
    assert old_style.age_s(decided) == -3
    new_style = old_style.model_copy(update={"requested_at": old_style.not_before})
    assert new_style.age_s(decided + timedelta(seconds=10)) == 7
