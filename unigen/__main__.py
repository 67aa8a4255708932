import sys

from unigen.cli.commands import main

sys.exit(main())
