import sys

from stars_plugins.cli.main import main

sys.exit(main())
