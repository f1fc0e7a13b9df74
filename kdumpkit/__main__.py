import sys

from kdumpkit.cli.main import main

sys.exit(main())
