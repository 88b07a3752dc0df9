"""The WSGI entry point Gunicorn imports in each worker (see gunicorn.conf.py).

XGBoost imports scikit-learn whenever it is installed (for its sklearn-style estimator
classes, which serving never uses), and scikit-learn pulls in SciPy's statistics and pandas:
in an environment with the dev requirements that was most of a worker's start-up time and
about 90 MiB of its memory. A ``None`` entry in ``sys.modules`` makes that import fail as if
the package were absent, which XGBoost handles; the runtime image does not install it at all.
"""

import sys

sys.modules.setdefault("sklearn", None)

from flask_app import create_app  # noqa: E402

app = create_app()
