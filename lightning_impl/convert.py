"""`python -m lightning_impl.convert`: the converter's command, kept under the port's name.

The conversion itself lives in bridge/ (bridge.convert, bridge.command), the one
package that imports both frameworks; this entry point only calls it.
"""

from bridge.command import main

if __name__ == "__main__":
    from configs.console import run_main

    raise SystemExit(run_main(main))
