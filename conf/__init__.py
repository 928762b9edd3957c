"""Hydra configs of schedgym, packaged as ``schedgym.conf`` (read with ``pkg://schedgym.conf``)."""
