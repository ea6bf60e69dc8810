"""Which refusals of a starting PostgreSQL the dev control plane waits out, and which fail at once.

The messages are PostgreSQL 15's own (as psql prints them). A server restarted after SIGKILL runs crash
recovery first and answers "not yet accepting connections"; that must be waited for, while a
rejection by pg_hba.conf or a wrong password must fail the start within seconds.
"""

from __future__ import annotations

import pytest

from joch.devcluster import stores

PREFIX = 'psql: error: connection to server at "127.0.0.1", port 5432 failed: '


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            PREFIX + "Connection refused\n\tIs the server running on that host?", id="not listening"
        ),
        pytest.param(PREFIX + "FATAL:  the database system is starting up", id="starting up"),
        pytest.param(
            PREFIX + "FATAL:  the database system is not yet accepting connections\n"
            "DETAIL:  Consistent recovery state has not been yet reached.",
            id="crash recovery after SIGKILL",
        ),
        pytest.param(PREFIX + "FATAL:  the database system is in recovery mode", id="recovery mode"),
        pytest.param(PREFIX + "FATAL:  the database system is shutting down", id="shutting down"),
    ],
)
def test_a_server_on_its_way_up_is_waited_for(answer: str) -> None:
    assert stores.transient_refusal(answer)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            PREFIX + 'FATAL:  pg_hba.conf rejects connection for host "127.0.0.1", user "kine"', id="pg_hba"
        ),
        pytest.param(PREFIX + 'FATAL:  password authentication failed for user "kine"', id="password"),
        pytest.param(PREFIX + 'FATAL:  database "postgres" does not exist', id="no database"),
        pytest.param("", id="no answer"),
    ],
)
def test_a_refusal_that_will_not_change_fails_at_once(answer: str) -> None:
    assert not stores.transient_refusal(answer)
