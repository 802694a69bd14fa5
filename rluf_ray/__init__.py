"""rluf-ray: Conformal Feedback Alignment (RLUF) as one Ray driver job."""

__version__ = "0.1.0"
