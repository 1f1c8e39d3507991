"""How each model of the lecture is trained and evaluated, one module per model
(``bert``, ``gpt``, ``vit``, ``clip``, the S17 ``clip_shift`` experiment) and the
``tour`` that runs them all. The commands (``minivl.commands``), the tour and
the notebooks call these functions; the one training loop is ``minivl.train``.
"""
