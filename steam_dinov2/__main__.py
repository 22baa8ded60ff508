import logging
import os
import sys

from .cli import INTERRUPTED, main

code = main()
if code == INTERRUPTED:
    # A download thread may sit in a socket read for the HTTP timeout (20 s); everything on disk
    # is already consistent, so do not wait for them at interpreter exit.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
raise SystemExit(code)
