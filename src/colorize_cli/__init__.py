"""colorize-cli: put plausible colour into black-and-white photographs."""

__version__ = "0.1.0"
