"""channeld entry point: `python -m channeld` (spawned by lightningd, one per channel)."""
from common.daemon import run

from .channeld import main

if __name__ == "__main__":
    run("channeld", main, hsm_sync=True)
