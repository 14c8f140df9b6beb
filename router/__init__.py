"""hybrid-router: an OpenAI-compatible gateway that answers with a local model and escalates to the cloud."""

__version__ = "0.1.0"
