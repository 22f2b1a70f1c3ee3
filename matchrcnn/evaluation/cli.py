"""How the file-scoring tools end (tools/eval_retrieval.py, tools/eval_results.py); no torch.

A run ends done (exit 0, with one ``warning: ...`` line on stderr for each kind of entry scored
as the official script scores it although it breaks the format), with malformed input (exit 1:
``problem: FILE: entry N: REASON`` for each bad entry, or ``problem: FILE: REASON`` for a whole
file, then one ``error:`` line; nothing is scored), or interrupted (exit 130). Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

from matchrcnn.evaluation.entries import EntriesError

EXIT_PROBLEMS = 1
EXIT_INTERRUPTED = 130


def print_warnings(lines: Iterable[str]) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


def problem_lines(error: EntriesError) -> list[str]:
    """The lines that name every fault of a malformed input, and the closing error line."""
    if not error.entries:
        message = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
        return [f"problem: {message}", "error: nothing was scored"]
    count = len(error.entries)
    lines = [f"problem: {error.name}: entry {index}: {reason}" for index, reason in error.entries]
    lines.append(f"error: {error.name}: {count} malformed entr{'y' if count == 1 else 'ies'}; "
                 "nothing was scored")
    return lines


def report_problems(errors: Iterable[EntriesError]) -> int:
    """Print every fault of each malformed input; the exit code to return."""
    for error in errors:
        for line in problem_lines(error):
            print(line, file=sys.stderr)
    return EXIT_PROBLEMS


def run_scoring(run: Callable[[], int]) -> int:
    """Run a scoring tool's body; malformed input and Ctrl-C become messages and exit codes."""
    try:
        return run()
    except EntriesError as error:
        return report_problems([error])
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
