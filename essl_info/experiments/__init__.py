"""Experiments on the bundled trainer (DESIGN §10): declarative sweeps of training runs
(``sweep``), their ``essl-info train`` command lines (``commands``) and the theory test
(``theory``: does the data-level Î(A;C|X) predict which transformation helps?).

Experiments sit above training and diagnostics: they import both; neither imports them.
"""
