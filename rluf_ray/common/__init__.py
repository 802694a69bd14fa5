"""Pure helpers several subjects share: answer normalisation and prompt fitting (``text``), progress
lines people can read (``progress``), and the frames a caught exception keeps alive (``frames``).

May import: the standard library only. Every module here is pure (no Ray, no files, no network).
"""
