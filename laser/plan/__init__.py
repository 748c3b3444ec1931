"""The memory plan (`python -m laser.plan`): every phase's peak device memory at a config's real shapes,
traced with fake tensors (no weights, no GPU), and the knob that makes a config fit.

    shapes.py   model architectures (config.json) without weights; the paper's ship in shapes/
    live.py     counting live tensor storages (and the CPU allocator's own peak, for validation)
    trace.py    fake models, the real Policy around them, extrapolation over depth
    phases.py   the step's phases, run as the step runs them
    inputs.py   what the plan reads from a composed config
    planner.py  the rows: each phase's peak with what else is on the device; placement=auto
    advice.py   the knobs that make a phase fit
    table.py    the printout
"""
