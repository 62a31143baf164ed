"""The template process that forks every subdaemon (see zygote.zygote)."""
