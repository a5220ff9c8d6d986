import sys

from inspectd.daemon.cli import main

sys.exit(main())
