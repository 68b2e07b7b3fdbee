"""`python -m gateway_demo`, the same as `gateway demo`."""

import sys

from gateway_demo.run import main

sys.exit(main())
