"""Package data: the manual pages (``lightning-<command>.7.md``,
``lightningd.8.md``, ``lightningd-config.5.md``, ``lightning-cli.1.md``).

This directory is a package only so that setuptools ships the Markdown files
with ``cli`` (the project's package-data rule matches ``*.md`` inside
packages); ``lightning-cli help COMMAND`` reads them with importlib.resources.
"""
