"""xsyn: labelled synthetic X-ray baggage scans from a box-grounded diffusion model.

Importing the package makes the process offline and sets its thread policy (see
:mod:`xsyn.env`) before any library that could reach a model hub, or start threads, is imported.
"""

from xsyn.env import ensure_offline, ensure_thread_env

ensure_offline()
ensure_thread_env()

__version__ = "0.1.0"
