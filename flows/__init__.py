"""Jobs around ``vae_core``: the ``vae-anomaly`` command line, file-to-file fit and score, the
demo, and (in later work) the Prefect flows and MLflow tracking. ``vae_core`` never imports
from here.
"""
