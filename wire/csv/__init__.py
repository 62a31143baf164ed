"""Package data: CSV message schemas (``bolt.csv`` is the BOLT spec extract).

This directory is a package only so that setuptools ships the CSV files with
``wire`` (the project's package-data rule matches ``*.csv`` inside packages).
"""
