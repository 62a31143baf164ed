"""``python -m contrib.regtest`` runs regtestd without the console script."""
import sys

from .main import main

sys.exit(main())
