import sys

from xsyn.cli import main

sys.exit(main())
