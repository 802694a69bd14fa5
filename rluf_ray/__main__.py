"""``python -m rluf_ray`` is the ``rluf`` console script."""

from rluf_ray.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
