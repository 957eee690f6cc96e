"""The ``nst-core`` command-line front end (a plugin of the nst_core engine)."""
