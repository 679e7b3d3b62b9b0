import sys

from adjointbench.cli import main

sys.exit(main())
