"""linegate: line-side inspection daemon (GenICam in, fixed-deadline inference, PLC rejects out)."""

__version__ = "0.1.0"
