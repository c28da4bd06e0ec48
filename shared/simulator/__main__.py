"""Run the simulated provider: ``python -m shared.simulator --port 0``."""

import argparse
import sys

from shared.simulator import add_arguments, run_from_args

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m shared.simulator", description=__doc__)
    add_arguments(parser)
    sys.exit(run_from_args(parser.parse_args()))
