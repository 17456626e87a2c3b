"""``linegate soak``: run the real pipeline for a long time and report memory growth, misses and
reconciliation (the command is :mod:`linegate.toolchain.soak_cmd`).

Modules: :mod:`.duration` (``1h``, ``30m``, ``90s``), :mod:`.memory` (RSS/PSS of a process tree from
/proc), :mod:`.records` (what the run's JSON log says: worker pids, latency, the final summary),
:mod:`.sampler` (one sample of memory and live counters), :mod:`.report` (samples to figures,
criteria and Markdown, pure), :mod:`.session` (starts, samples and stops the run) and
:mod:`.child` (``linegate run`` with the demo's PLC port and an instance name set).
"""
