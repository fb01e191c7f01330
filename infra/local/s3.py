"""A local S3: moto's S3 API on a free port of 127.0.0.1, every AWS client of the process pointed at it.

Used by ``make local-stack`` (:mod:`infra.local.stack`) and by the tests' ``moto_endpoint``
fixture, so both run against the same thing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

#: What the AWS clients of this process and of the steps use: the local server, test credentials.
AWS_SETTINGS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def local_s3() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 for as long as the block runs; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    # Once Airflow has set up logging, the server's access log and botocore's notes would reach
    # the terminal: they are noise here.
    for name in ("werkzeug", "botocore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {key: os.environ.get(key) for key in [*AWS_SETTINGS, "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"]}
    os.environ.update(AWS_SETTINGS, AWS_ENDPOINT_URL=endpoint)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
