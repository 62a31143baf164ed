"""onchaind entry point: `python -m onchaind` (spawned by lightningd, one per
channel whose funding output was spent)."""
from common.daemon import run

from .onchaind import main

if __name__ == "__main__":
    run("onchaind", main, hsm_sync=True)
