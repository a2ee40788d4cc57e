"""The explorer's report at the end of a session: seeds run, how fast, which failed (each
replays with `make explore SEED=n`)."""

import re


def pytest_terminal_summary(terminalreporter):
    from tests.explore.test_explore import TIMINGS

    if not TIMINGS:
        return
    failed = sorted(
        int(match.group(1))
        for report in terminalreporter.stats.get("failed", [])
        if (match := re.search(r"keeps_every_invariant_and_bound\[(\d+)\]", report.nodeid))
    )
    seconds = sum(TIMINGS)
    terminalreporter.write_line(
        f"explorer: {len(TIMINGS)} seed(s) in {seconds:.0f}s, "
        f"{60 * len(TIMINGS) / seconds:.1f} seeds/minute; "
        + (f"failing: {failed} (make explore SEED=n replays one)" if failed else "none failed")
    )
