"""patchkit: keep a firmware patch series, apply it, build it, boot-test it, mail it."""

__version__ = "0.1.0"
