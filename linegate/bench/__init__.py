"""``linegate bench``: the performance evidence in one run.

For each model and rate (a sustainable one and an overload), three sides on the same simulated
camera, model and recording PLC simulator: linegate (the real :class:`Supervisor` pipeline), the
naive synchronous script (:mod:`linegate.bench.naive`) and the bare engine floor (infer in a tight
loop). Modules: :mod:`.stats` (percentiles), :mod:`.records` (reading and matching timestamps),
:mod:`.scenarios` (models, rates, configurations), :mod:`.runner` (running one scenario),
:mod:`.report` (Markdown and JSON), :mod:`.plots` (PNG, matplotlib), :mod:`.machine` (facts).
"""
