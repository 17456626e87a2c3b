"""The running pipeline: acquisition, inference and PLC worker processes under one supervisor."""
