import logging
import os
import sys

from .cli import INTERRUPTED, main

code = main()
if code == INTERRUPTED:
    # Download threads may sit in a socket read for up to --timeout seconds; everything on disk
    # is already consistent, so do not wait for them at interpreter exit.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
raise SystemExit(code)
