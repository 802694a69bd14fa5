"""Helpers several subjects share: answer normalisation and prompt fitting (``text``), progress
lines people can read (``progress``), the frames a caught exception keeps alive (``frames``), and the
console's level and the full log file (``console``).

May import: the standard library only. Every module here but ``console`` is pure (no Ray, no files, no
network); ``console`` configures logging and writes the log file it is handed.
"""
