import sys

from tinybeauty.cli import main

sys.exit(main())
