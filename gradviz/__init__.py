"""gradviz: watch gradients flow through recurrent networks while they train."""
__version__ = "0.1.0"
