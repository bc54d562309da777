import sys

from liftcam.cli import main

sys.exit(main())
