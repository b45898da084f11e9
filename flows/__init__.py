"""Jobs around ``vae_core``: the ``vae-anomaly`` command line (``cli``), the training and
scoring flows, the one scoring pipeline (``pipeline``), MLflow runs, registry and pyfunc
(``mlops``) and the batch report (``reporting``). ``vae_core`` never imports from here.
"""
