import sys

from audiovec.cli import main

sys.exit(main())
