"""`python -m data` is `python -m data.prepare`: prepare (or load) the dataset and report on it.

    python -m data --json
"""

import sys

from data.prepare import main

sys.exit(main())
