"""Floor 7, looking at results (issue #36 item 6): the study's figures (``study_figures``), the method on one batch
(``show``), the notebooks' "look inside" views of a step's files (``inside``) and the tour's inputs (``tour``).

May import: every floor below (``hicra.method``, ``hicra.training``, ``hicra.stepkit``, ``hicra.store``), the sandbox
and the steps' entry points whose files it reads (``hicra.error_analysis``); never ``hicra.study`` and the drivers
above it (they import this package).

    from hicra.analysis import show, tour              # notebook 00: t = tour.setup(tour.TourConfig()); show.*
"""
