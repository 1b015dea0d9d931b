"""Floor 2, what every step is made of (issue #36 item 6): its config from YAML and ``--key value`` flags (``cli``),
its shared fields, folder, summary line and signals (``steps``), its figures' style and saving (``plotting``: the
one colour table), its notebook's parameters and quiet output (``nbparams``, ``nbclean``), and the config layers
under one name for code written before they were split (``config``).

May import: ``hicra.method`` (each method's colour) and ``hicra.store``. No torch.
"""
