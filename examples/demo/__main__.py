"""The closed-loop demo: `python examples/demo`, or `python -m demo` with `examples` on the path."""

import sys
from pathlib import Path

EXAMPLES = str(Path(__file__).resolve().parents[1])
if EXAMPLES not in sys.path:
    sys.path.insert(0, EXAMPLES)  # `demo` and `loadgen` live here

from demo.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
