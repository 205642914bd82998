"""A local rank whose transport fails on purpose (test-only), started by the launcher in place of
``python -m jwins.launch``.

``FAULT_AFTER_ROUND=R`` makes rank ``FAULT_RANK`` (default 1), once R rounds are complete and their results
have reached rank 0, either exit with status 17 (``FAULT=exit``), stop answering (``FAULT=hang``) or receive a
SIGINT as if Ctrl-C reached it alone (``FAULT=interrupt``).
"""
from __future__ import annotations

import os
import signal
import sys
import time

from jwins import launch


class FaultyTransport:
    def __init__(self, engine):
        self.engine = engine
        self.trusted = engine.trusted

    def exchange(self, outgoing, graph, round):
        after = os.environ.get("FAULT_AFTER_ROUND")
        if after is not None and round == int(after) and self.engine.rank == int(os.environ.get("FAULT_RANK", "1")):
            self.engine.flush()  # round R's results have reached rank 0
            fault = os.environ.get("FAULT", "exit")
            if fault == "interrupt":
                os.kill(os.getpid(), signal.SIGINT)
            elif fault == "hang":
                while True:
                    time.sleep(3600)
            else:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(17)
        return self.engine.exchange(outgoing, graph, round)


if __name__ == "__main__":
    sys.exit(launch.rank_main(sys.argv[1:], wrap_transport=FaultyTransport))
