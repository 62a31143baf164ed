#!/usr/bin/env python3
"""Dies before answering getmanifest."""
import sys
sys.exit(3)
