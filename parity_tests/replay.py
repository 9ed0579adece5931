"""`python -m parity_tests.replay`: a scripted metric curve through Keras's and Lightning's callbacks.

The command keeps this name; its code lives in reports/ (reports/replay.py
explains the replay, reports/replay_cli.py its flags).
"""

import sys

from reports.replay_cli import main

if __name__ == "__main__":
    sys.exit(main())
