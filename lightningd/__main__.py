"""`python -m lightningd` and the `lightningd` command (lightningd.__main__:run)."""
from . import early_signals


def run() -> None:
    early_signals.install()     # before anything else is imported
    from .main import main
    main()


if __name__ == "__main__":
    run()
