import sys

from archbench.cli import main

sys.exit(main())
