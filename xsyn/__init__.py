"""xsyn: labelled synthetic X-ray baggage scans from a box-grounded diffusion model.

Importing the package makes the process offline (see :mod:`xsyn.env`) before any
library that could reach a model hub is imported.
"""

from xsyn.env import ensure_offline

ensure_offline()

__version__ = "0.1.0"
