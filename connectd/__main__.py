"""connectd entry point: `python -m connectd` (spawned by lightningd)."""
from common.daemon import Daemon, run

from .connectd import Connectd


async def main(d: Daemon) -> None:
    await Connectd(d).run()


if __name__ == "__main__":
    run("connectd", main)
