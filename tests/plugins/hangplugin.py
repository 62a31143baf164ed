#!/usr/bin/env python3
"""Never answers getmanifest."""
import time
time.sleep(3600)
