"""zygote entry point: `python -m zygote` (spawned by lightningd, one per node)."""
from .zygote import main

if __name__ == "__main__":
    main()
