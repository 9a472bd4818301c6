"""The sample workload: a small HTTP service with a known capacity, for demos and tests.

Built into a single-file artifact with `python3 -m zipapp examples/workload -o workload.pyz` and
started as `python3 workload.pyz --port PORT` (see docs/interfaces.md for its environment).
Standard library only, so an instance starts in a fraction of a second.
"""

from workload import main

if __name__ == "__main__":
    main()
