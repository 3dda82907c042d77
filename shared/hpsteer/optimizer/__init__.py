"""Planning: what each heat pump's modes should be, slot by slot, and what that costs.

:mod:`.problem` states a planning problem and evaluates any mode schedule on the plant;
planners (baselines, the OR-Tools planner) implement :class:`~.problem.Planner`.
"""
