"""`python -m lightning_impl ...` is `python -m lightning_impl.train ...` (see that module)."""

from configs.console import run_main
from lightning_impl.train import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
