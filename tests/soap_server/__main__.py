"""Run the test SOAP counterpart in its own process: ``python -m soap_server --records 20000``.

Prints one line ``READY <records url>`` when it serves, then runs until killed (the benchmark
uses this so that client and server do not share one interpreter lock).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .server import SoapTestServer
from .services import Control, make_records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1000, help="records the query operation serves")
    parser.add_argument("--wsdl", type=Path, help="also write the records service's WSDL to this file")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with SoapTestServer(Control(records=make_records(args.records))) as server:
        if args.wsdl is not None:
            server.write_records_wsdl(args.wsdl)
        print(f"READY {server.records_url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
