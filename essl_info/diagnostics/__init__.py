"""What the library measures: features of a model under each transformation (:mod:`.features`),
the information quantities (:mod:`.quantities`), ``measure`` and the CLI glue (:mod:`.measure`),
``rank_transforms`` before training (:mod:`.rank`, :mod:`.transform_predictors`) and the
report formats (:mod:`.report`). Data flows measure → features → estimators → Estimate.
"""
