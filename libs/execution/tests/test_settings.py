"""Executor settings: timeouts reach the venue, and redelivery never outlives the max age."""

from __future__ import annotations

import pytest

from marketbot.execution.app import venue_settings
from marketbot.execution.settings import ExecutorSettings


def test_http_timeouts_and_limit_refresh_are_configuration() -> None:
    settings = ExecutorSettings(
        http_connect_timeout_s=1.5,
        http_read_timeout_s=2.5,
        http_write_timeout_s=3.5,
        http_pool_timeout_s=4.5,
        rate_limits_refresh_s=60.0,
    )
    http = venue_settings(settings).http
    assert (http.connect_timeout_s, http.read_timeout_s) == (1.5, 2.5)
    assert (http.write_timeout_s, http.pool_timeout_s) == (3.5, 4.5)
    assert http.limits_refresh_s == 60.0


def test_an_ack_wait_not_far_shorter_than_the_max_age_is_refused_naming_the_field() -> None:
    defaults = ExecutorSettings()
    assert defaults.ack_wait_s * 4 <= defaults.max_request_age_s
    with pytest.raises(ValueError, match=r"ack_wait_s=60s must be at most 25% .* 120s"):
        ExecutorSettings(ack_wait_s=60.0)
    with pytest.raises(ValueError, match="ack_wait_s=20s"):
        ExecutorSettings(max_request_age_s=30.0)
    assert ExecutorSettings(ack_wait_s=60.0, max_request_age_s=240.0).ack_wait_s == 60.0


def test_a_stream_lease_renewed_too_rarely_is_refused_naming_both_fields() -> None:
    with pytest.raises(ValueError, match=r"stream_lease_renew_s \(20.0\) .* stream_follow_lease"):
        ExecutorSettings(stream_lease_renew_s=20.0, stream_follow_lease_s=30.0)
    assert ExecutorSettings(stream_lease_renew_s=2.0, stream_follow_lease_s=4.0)


def test_stream_source_ips_are_a_list_of_addresses_and_a_bad_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ExecutorSettings().source_ips == ()
    monkeypatch.setenv("MARKETBOT_EXECUTOR_STREAM_SOURCE_IPS", "127.0.0.1, 127.0.0.2")
    assert ExecutorSettings().source_ips == ("127.0.0.1", "127.0.0.2")
    with pytest.raises(ValueError, match=r"stream_source_ips: '10\.0\.0' is not an IP address"):
        ExecutorSettings(stream_source_ips="127.0.0.1,10.0.0")


def test_the_balance_snapshot_age_bound_is_configuration_and_a_bad_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from marketbot.execution.app import feed_config

    assert feed_config(ExecutorSettings()).snapshot_max_age_s == 900.0
    monkeypatch.setenv("MARKETBOT_EXECUTOR_BALANCE_SNAPSHOT_MAX_AGE_S", "120")
    assert feed_config(ExecutorSettings()).snapshot_max_age_s == 120.0
    assert ExecutorSettings(balance_snapshot_max_age_s=0).balance_snapshot_max_age_s == 0
    for bad in ("-1", "86400", "nan"):
        monkeypatch.setenv("MARKETBOT_EXECUTOR_BALANCE_SNAPSHOT_MAX_AGE_S", bad)
        with pytest.raises(ValueError, match=r"balance_snapshot_max_age_s: .* between 0"):
            ExecutorSettings()
    monkeypatch.setenv("MARKETBOT_EXECUTOR_BALANCE_SNAPSHOT_MAX_AGE_S", "soon")
    with pytest.raises(ValueError, match="balance_snapshot_max_age_s"):
        ExecutorSettings()
