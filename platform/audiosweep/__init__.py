"""audiosweep: Ray-orchestrated sweeps for audio tagging."""

__version__ = "0.1.0"
