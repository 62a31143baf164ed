"""gossipd entry point: `python -m gossipd` (spawned by lightningd)."""
from common.daemon import Daemon, run

from .gossipd import Gossipd


async def main(d: Daemon) -> None:
    await Gossipd(d).run()


if __name__ == "__main__":
    run("gossipd", main)
