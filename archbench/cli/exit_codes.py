"""The ``archbench`` command's exit codes (documented in the README, "Exit codes")."""

OK = 0
#: ``archbench train``: training diverged (a result, recorded as such); ``plot``: nothing drawn.
DIVERGED = 1
#: Bad input: a spec, argument, name, file or storage the user must fix. Nothing was written.
BAD_INPUT = 2
#: ``archbench run``/``worker``: the run ended with configurations failed or not run.
INCOMPLETE = 3
INTERRUPTED = 130
