"""Print docs/cli.md's table of every detector's parameters, from their declarations.

    .venv/bin/python scripts/params_table.py
"""

from auditor.detectors import DETECTORS
from auditor.detectors.params import table

if __name__ == "__main__":
    print(table(DETECTORS), end="")
